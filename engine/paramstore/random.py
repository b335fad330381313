"""The engine's random source (`paramstore.random.seed` is Gluon's `mx.random.seed`)."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def seed(seed_state: int, ctx: object = "all") -> None:
    """Reseed every random draw the engine makes (initializers, `nd.random`, dropout)."""
    global _generator
    _generator = np.random.default_rng(seed_state)


def generator() -> np.random.Generator:
    return _generator
