"""Random arrays (`nd.random.uniform`, `normal`, `randint`), drawn from `paramstore.random`."""

from __future__ import annotations

from typing import Any

import numpy as np

from paramstore import random as _random
from paramstore.nd.ndarray import DEFAULT_DTYPE, NDArray


def _shape(shape: Any) -> tuple[int, ...]:
    if shape is None:
        return (1,)
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _out(values: np.ndarray, dtype: Any, out: NDArray | None) -> NDArray:
    values = values.astype(dtype or DEFAULT_DTYPE, copy=False)
    if out is not None:
        out[:] = values
        return out
    return NDArray._wrap(values)


def uniform(
    low: float = 0.0, high: float = 1.0, shape: Any = None, dtype: Any = None,
    ctx: Any = None, out: NDArray | None = None, **kwargs: Any,
) -> NDArray:
    """Draws from U[low, high)."""
    return _out(_random.generator().uniform(low, high, _shape(shape)), dtype, out)


def normal(
    loc: float = 0.0, scale: float = 1.0, shape: Any = None, dtype: Any = None,
    ctx: Any = None, out: NDArray | None = None, **kwargs: Any,
) -> NDArray:
    """Draws from N(loc, scale**2)."""
    return _out(_random.generator().normal(loc, scale, _shape(shape)), dtype, out)


def randint(
    low: int, high: int, shape: Any = None, dtype: Any = None,
    ctx: Any = None, out: NDArray | None = None, **kwargs: Any,
) -> NDArray:
    """Integers drawn uniformly from [low, high); int32 unless `dtype` says otherwise."""
    values = _random.generator().integers(low, high, _shape(shape))
    return _out(values, dtype or np.int32, out)
