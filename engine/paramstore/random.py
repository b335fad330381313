"""The engine's random source and samplers (`seed` is Gluon's `mx.random.seed`)."""

from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.default_rng()


def seed(seed_state: int, ctx: object = "all") -> None:
    """Reseed every random draw the engine makes (initializers, `nd.random`, dropout)."""
    global _generator
    _generator = np.random.default_rng(seed_state)


def generator() -> np.random.Generator:
    return _generator


# Gluon's `mx.random.uniform` and friends are `mx.nd.random`'s samplers; they load on first use
# because `paramstore.nd.random` draws from this module.
_SAMPLERS = {"normal", "randint", "randn", "shuffle", "uniform"}


def __getattr__(name: str) -> Any:
    if name in _SAMPLERS:
        from paramstore.nd import random as nd_random

        return getattr(nd_random, name)
    raise AttributeError(f"module 'paramstore.random' has no attribute {name!r}")
