"""Random arrays (`nd.random.uniform`, `normal`, `randint`), drawn from `paramstore.random`."""

from __future__ import annotations

from typing import Any

import numpy as np

from paramstore import random as _random
from paramstore.nd.ndarray import DEFAULT_DTYPE, NDArray, _placed


def _shape(shape: Any) -> tuple[int, ...]:
    if shape is None:
        return (1,)
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _out(values: np.ndarray, dtype: Any, out: NDArray | None, ctx: Any = None) -> NDArray:
    values = values.astype(dtype or DEFAULT_DTYPE, copy=False)
    if out is not None:
        out[:] = values
        return out
    return _placed(values, ctx)


def _draw(
    sample: Any, a: Any, b: Any, shape: Any, dtype: Any, out: NDArray | None, ctx: Any
) -> NDArray:
    """`sample(a, b, size)` for scalar parameters, or per element of NDArray parameters."""
    if not isinstance(a, NDArray):
        return _out(sample(a, b, _shape(shape)), dtype, out, ctx)
    extra = () if shape is None else _shape(shape)
    first, second = a._data, b._data if isinstance(b, NDArray) else np.asarray(b)
    trailing = (1,) * len(extra)
    values = sample(first.reshape(first.shape + trailing),
                    second.reshape(second.shape + trailing), first.shape + extra)
    return _out(values, dtype or first.dtype, out, ctx)


def uniform(
    low: float = 0.0, high: float = 1.0, shape: Any = None, dtype: Any = None,
    ctx: Any = None, out: NDArray | None = None, **kwargs: Any,
) -> NDArray:
    """Draws from U[low, high); NDArray bounds give `shape` draws per element."""
    return _draw(_random.generator().uniform, low, high, shape, dtype, out, ctx)


def normal(
    loc: float = 0.0, scale: float = 1.0, shape: Any = None, dtype: Any = None,
    ctx: Any = None, out: NDArray | None = None, **kwargs: Any,
) -> NDArray:
    """Draws from N(loc, scale**2); NDArray parameters give `shape` draws per element."""
    return _draw(_random.generator().normal, loc, scale, shape, dtype, out, ctx)


def randint(
    low: int, high: int, shape: Any = None, dtype: Any = None,
    ctx: Any = None, out: NDArray | None = None, **kwargs: Any,
) -> NDArray:
    """Integers drawn uniformly from [low, high); int32 unless `dtype` says otherwise."""
    values = _random.generator().integers(low, high, _shape(shape))
    return _out(values, dtype or np.int32, out, ctx)


def randn(*shape: int, loc: float = 0.0, scale: float = 1.0, dtype: Any = None,
          ctx: Any = None, **kwargs: Any) -> NDArray:
    """Draws from N(loc, scale**2) of the shape given as positional integers."""
    return normal(loc, scale, shape or None, dtype, ctx, **kwargs)


def shuffle(data: NDArray, **kwargs: Any) -> NDArray:
    """A copy of `data` with its first axis in random order."""
    return NDArray._wrap(_random.generator().permutation(data._data))
