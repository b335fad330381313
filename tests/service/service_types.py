"""The shapes of what the service tests' fixtures give (`conftest` builds them): a module of
its own, so that a test module imports them by one name whichever `conftest` pytest loaded."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramstore.client import Client, connect
from paramstore.server import ParamStoreServer
from paramstore.server.storage import Backend


@dataclass
class Storage:
    """Where a test's server keeps its stores: `data_dir` and `flags` for `paramstore serve`,
    `make_backend()` for the test's own look at what is stored."""

    data_dir: str
    flags: tuple[str, ...]
    make_backend: Callable[[], Backend]


@dataclass
class RunningServer:
    """A server under test: where it listens, where it keeps its snapshots."""

    address: str
    data_dir: Path
    token: str | None = None
    server: ParamStoreServer | None = None
    process: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    def connect(self, **options: Any) -> Client:
        options.setdefault("token", self.token)
        return connect(self.address, **options)
