"""`--log-level`, the one flag both `paramstore serve` and the client commands take."""

from __future__ import annotations

import argparse
import logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_level_flag(parser: argparse.ArgumentParser, default: str, what: str) -> None:
    """Add `--log-level LEVEL` (any case) to `parser`; `what` says what the levels show."""
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=default,
                        metavar="LEVEL",
                        help=f"{', '.join(LOG_LEVELS)} (default {default}): {what}")


def configure(level: str) -> None:
    """Log to stderr from `level` up, with times."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
