"""Gluon's `gluon.utils` helpers for data-parallel training: split a batch over contexts, clip
gradients by their global norm."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from paramstore.context import Context
from paramstore.nd import array_ops
from paramstore.nd.ndarray import NDArray, array

__all__ = ["clip_global_norm", "split_and_load", "split_data"]


def split_data(
    data: NDArray, num_slice: int, batch_axis: int = 0, even_split: bool = True
) -> list[NDArray]:
    """`num_slice` slices of `data` along `batch_axis`; uneven sizes only with `even_split`
    off (the first slices get one more). Raises `ValueError` as Gluon does otherwise."""
    size = data.shape[batch_axis]
    if even_split and size % num_slice != 0:
        raise ValueError(
            f"data with shape {data.shape} cannot be evenly split into {num_slice} slices "
            f"along axis {batch_axis}. Use a batch size that's multiple of {num_slice} or set "
            "even_split=False to allow uneven partitioning of data."
        )
    if size < num_slice:
        raise ValueError(
            f"Too many slices for data with shape {data.shape}. Arguments are "
            f"num_slice={num_slice} and batch_axis={batch_axis}."
        )
    each, extra = divmod(size, num_slice)
    bounds = np.cumsum([0] + [each + 1] * extra + [each] * (num_slice - extra)).tolist()
    return [array_ops.slice_axis(data, batch_axis, start, stop)
            for start, stop in zip(bounds, bounds[1:])]


def split_and_load(
    data: Any, ctx_list: Sequence[Context], batch_axis: int = 0, even_split: bool = True
) -> list[NDArray]:
    """`data` split along `batch_axis` into one slice per context, each placed on its context."""
    if not isinstance(data, NDArray):
        data = array(data, ctx=ctx_list[0])
    if len(ctx_list) == 1:
        return [data.as_in_context(ctx_list[0])]
    slices = split_data(data, len(ctx_list), batch_axis, even_split)
    return [part.as_in_context(ctx) for part, ctx in zip(slices, ctx_list)]


def clip_global_norm(
    arrays: Sequence[NDArray], max_norm: float, check_isfinite: bool = True
) -> float | NDArray:
    """Scale `arrays` in place so that their joint L2 norm is at most `max_norm`; return the
    norm before scaling (a float, or an NDArray when `check_isfinite` is off). Warns when the
    norm is not finite."""
    if not arrays:
        raise ValueError("clip_global_norm needs at least one array")
    total = math.sqrt(sum(float(np.sum(np.square(a._data, dtype=np.float64))) for a in arrays))
    if check_isfinite and not math.isfinite(total):
        warnings.warn(UserWarning("nan or inf is detected. Clipping results will be undefined."),
                      stacklevel=2)
    scale = max_norm / (total + 1e-8)
    if scale < 1.0:
        with np.errstate(invalid="ignore"):  # an infinite norm was warned about above
            for a in arrays:
                a._data *= a._data.dtype.type(scale)
    return total if check_isfinite else array([total], dtype=arrays[0].dtype)
