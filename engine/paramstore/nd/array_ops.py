"""Everyday array operators: slicing, gathering, tiling, sorting and broadcasting.

Each function takes NDArrays and returns new ones (copies, as Gluon's operators do), recording
itself on the tape when it is differentiable in Gluon. Index inputs may be floats (Gluon's
convention): they truncate toward zero. Shapes that do not fit raise `EngineError` naming the op.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from paramstore._tape import record as _record
from paramstore._tape import record1 as _record1
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray
from paramstore.nd.ops import (
    _shape_error,
    _target_shape,
    _unbroadcast,
    maximum,
    minimum,
    power,
)

_wrap = NDArray._wrap


def _axis(op: str, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise EngineError(f"{op}: axis {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def _scatter_into(shape: tuple[int, ...], key: Any) -> Callable:
    """Backward of an op that copies `x[key]` (a basic index): gradients go back to `key`."""

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        full = np.zeros(shape, dtype=g.dtype)
        full[key] = g
        return (full,)

    return backward


def _cut(op: str, data: NDArray, key: tuple) -> NDArray:
    out = _wrap(data._data[key].copy())
    return _record1(op, out, data, _scatter_into(data.shape, key))


# ---- slicing ----------------------------------------------------------------------------------
def slice(data: NDArray, begin: Any, end: Any, step: Any = None) -> NDArray:
    """`data[begin[0]:end[0]:step[0], ...]`; None in any tuple means the default of that axis.

    Axes past the tuples are taken whole. Raises `EngineError` for more entries than axes.
    """
    begin, end = tuple(begin), tuple(end)
    step = tuple(step) if step is not None else (None,) * len(begin)
    if not len(begin) == len(end) == len(step) or len(begin) > data.ndim:
        raise EngineError(
            f"slice: begin {begin}, end {end} and step {step} must have the same length, at most "
            f"the {data.ndim} dimensions of the data"
        )
    for axis, stride in enumerate(step):
        if stride == 0:
            raise EngineError(f"slice: step of axis {axis} must not be 0")
    return _cut("slice", data, tuple(builtins.slice(*bounds) for bounds in zip(begin, end, step)))


def slice_axis(data: NDArray, axis: int, begin: int, end: int | None) -> NDArray:
    """`data[..., begin:end, ...]` along `axis` (`end=None`: to the end)."""
    axis = _axis("slice_axis", axis, data.ndim)
    size = data.shape[axis]
    start = begin + size if begin < 0 else begin
    stop = size if end is None else (end + size if end < 0 else end)
    if not 0 <= start < stop <= size:
        raise EngineError(
            f"slice_axis: begin {begin} and end {end} do not select a range of axis {axis} "
            f"of size {size}"
        )
    return _cut("slice_axis", data, (builtins.slice(None),) * axis + (builtins.slice(start, stop),))


def slice_like(data: NDArray, shape_like: NDArray, axes: Any = ()) -> NDArray:
    """The leading corner of `data` with the shape of `shape_like` (on `axes` only, if given)."""
    if axes == () or axes is None:
        if data.ndim != shape_like.ndim:
            raise EngineError(
                f"slice_like: data of shape {data.shape} and shape_like of shape "
                f"{shape_like.shape} differ in rank"
            )
        axes = range(data.ndim)
    key = [builtins.slice(None)] * data.ndim
    for axis in axes:
        axis = _axis("slice_like", axis, data.ndim)
        size = shape_like.shape[axis] if axis < shape_like.ndim else -1
        if not 0 <= size <= data.shape[axis]:
            raise EngineError(
                f"slice_like: axis {axis} of shape_like {shape_like.shape} does not fit in data "
                f"of shape {data.shape}"
            )
        key[axis] = builtins.slice(0, size)
    return _cut("slice_like", data, tuple(key))


def squeeze(data: NDArray, axis: Any = None) -> NDArray:
    """Drop axes of length 1 (all of them, or those named); a result of no axes has shape (1,)."""
    x = data._data
    if axis is not None:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        for a in axes:
            if x.shape[_axis("squeeze", a, x.ndim)] != 1:
                raise EngineError(
                    f"squeeze: axis {a} of the shape {x.shape} has length {x.shape[a]}, not 1"
                )
        axis = tuple(a % x.ndim for a in axes)
    squeezed = np.squeeze(x, axis=axis)
    out = _wrap((squeezed.reshape(1) if squeezed.ndim == 0 else squeezed).copy())
    return _record1("squeeze", out, data, lambda g, n: (g.reshape(x.shape),))


# ---- gathering --------------------------------------------------------------------------------
def _positions(op: str, indices: Any, size: int, mode: str) -> np.ndarray:
    raw = indices._data if isinstance(indices, NDArray) else np.asarray(indices)
    positions = raw.astype(np.int64)
    if mode == "clip":
        return np.clip(positions, 0, size - 1)
    if mode == "wrap":
        return np.mod(positions, size)
    if mode == "raise":
        if positions.size and (positions.min() < 0 or positions.max() >= size):
            raise EngineError(f"{op}: an index is out of range for an axis of size {size}")
        return positions
    raise ValueError(f"{op}: mode must be 'clip', 'wrap' or 'raise', got {mode!r}")


def take(a: NDArray, indices: NDArray, axis: int = 0, mode: str = "clip") -> NDArray:
    """The slices of `a` along `axis` named by `indices`: shape `a[:axis] + indices + a[axis+1:]`.

    Out-of-range indices clip (`mode='clip'`), wrap (`'wrap'`) or raise `EngineError` (`'raise'`).
    """
    x = a._data
    axis = _axis("take", axis, x.ndim)
    positions = _positions("take", indices, x.shape[axis], mode)
    out = _wrap(np.take(x, positions, axis=axis))
    depth = positions.ndim

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        full = np.zeros_like(x)
        front = np.moveaxis(g, tuple(range(axis, axis + depth)), tuple(range(depth)))
        np.add.at(np.moveaxis(full, axis, 0), positions, front)
        return (full, None)

    return _record("take", out, (a, indices if isinstance(indices, NDArray) else None), backward)


def split(
    data: NDArray, num_outputs: int, axis: int = 1, squeeze_axis: bool = False
) -> NDArray | list[NDArray]:
    """`num_outputs` equal parts along `axis` (one array when `num_outputs` is 1).

    `squeeze_axis` drops the split axis, whose parts must then have length 1. Raises
    `EngineError` when the axis does not divide evenly.
    """
    axis = _axis("split", axis, data.ndim)
    size = data.shape[axis]
    if num_outputs < 1 or size % num_outputs:
        raise EngineError(
            f"split: axis {axis} of length {size} cannot be split into {num_outputs} equal parts"
        )
    width = size // num_outputs
    if squeeze_axis and width != 1:
        raise EngineError(
            f"split: squeeze_axis needs parts of length 1, but axis {axis} gives {width}"
        )
    parts = []
    for start in range(0, size, width):
        part = slice_axis(data, axis, start, start + width)
        parts.append(squeeze(part, axis) if squeeze_axis else part)
    return parts[0] if num_outputs == 1 else parts


# ---- tiling -----------------------------------------------------------------------------------
def tile(data: NDArray, reps: Any) -> NDArray:
    """`data` repeated `reps[i]` times along axis i (the shorter of shape and reps padded by 1s)."""
    x = data._data
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    out = _wrap(np.tile(x, reps))
    rank = builtins.max(x.ndim, len(reps))
    shape = (1,) * (rank - x.ndim) + x.shape
    counts = (1,) * (rank - len(reps)) + reps

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        interleaved = g.reshape([n for pair in zip(counts, shape) for n in pair])
        return (interleaved.sum(axis=tuple(range(0, 2 * rank, 2))).reshape(x.shape),)

    return _record1("tile", out, data, backward)


def repeat(data: NDArray, repeats: int, axis: int | None = None) -> NDArray:
    """Each element repeated `repeats` times along `axis` (of the flattened data when None)."""
    x = data._data
    if repeats < 0:
        raise EngineError(f"repeat: repeats must be >= 0, got {repeats}")
    if axis is None:
        out = _wrap(np.repeat(x.reshape(-1), repeats))
        grouped = (x.size, repeats)
        summed = 1
    else:
        axis = _axis("repeat", axis, x.ndim)
        out = _wrap(np.repeat(x, repeats, axis=axis))
        grouped = x.shape[: axis + 1] + (repeats,) + x.shape[axis + 1 :]
        summed = axis + 1
    return _record1(
        "repeat", out, data, lambda g, n: (g.reshape(grouped).sum(axis=summed).reshape(x.shape),)
    )


# ---- sorting ----------------------------------------------------------------------------------
def _order(x: np.ndarray, axis: int, is_ascend: bool) -> np.ndarray:
    # A stable sort of the values (or of their negation, descending): ties keep index order.
    return np.argsort(x if is_ascend else -x, axis=axis, kind="stable")


def topk(
    data: NDArray,
    axis: int | None = -1,
    k: int = 1,
    ret_typ: str = "indices",
    is_ascend: bool = False,
    dtype: Any = "float32",
) -> NDArray | list[NDArray]:
    """The `k` largest (smallest with `is_ascend`) elements along `axis` (flattened when None).

    `ret_typ` is 'indices' (their positions, in `dtype`), 'value', 'both' ([values, indices])
    or 'mask' (0/1 of the data's shape). `k < 1` keeps the whole axis, sorted.
    """
    if ret_typ not in ("indices", "value", "both", "mask"):
        raise ValueError(f"topk: ret_typ must be indices, value, both or mask, got {ret_typ!r}")
    source = data if axis is not None else data.reshape((-1,))
    x = source._data
    axis = _axis("topk", -1 if axis is None else axis, x.ndim)
    size = x.shape[axis]
    if k > size:
        raise EngineError(f"topk: k={k} is larger than the {size} elements of axis {axis}")
    count = size if k < 1 else k
    order = np.take(_order(x, axis, is_ascend), np.arange(count), axis=axis)
    if ret_typ == "mask":
        mask = np.zeros_like(x)
        np.put_along_axis(mask, order, 1, axis=axis)
        return _wrap(mask)
    # Positions are outputs of the op in Gluon too: on the tape, with a zero gradient.
    indices = _record1("topk", _wrap(order.astype(dtype)), source,
                       lambda g, n: (np.zeros_like(x),))
    if ret_typ == "indices":
        return indices
    values = _wrap(np.take_along_axis(x, order, axis=axis))

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        full = np.zeros_like(x)
        np.put_along_axis(full, order, g, axis=axis)
        return (full,)

    values = _record1("topk", values, source, backward)
    return values if ret_typ == "value" else [values, indices]


def sort(data: NDArray, axis: int | None = -1, is_ascend: bool = True) -> NDArray:
    """The values sorted along `axis` (flattened when None), smallest first unless not ascending."""
    return cast(NDArray, topk(data, axis=axis, k=0, ret_typ="value", is_ascend=is_ascend))


def argsort(
    data: NDArray, axis: int | None = -1, is_ascend: bool = True, dtype: Any = "float32"
) -> NDArray:
    """The positions that sort `data` along `axis`, in `dtype` (float32 by default, as Gluon)."""
    return cast(NDArray, topk(data, axis=axis, k=0, ret_typ="indices", is_ascend=is_ascend,
                              dtype=dtype))


# ---- broadcasting -----------------------------------------------------------------------------
def _broadcast(op: str, data: NDArray, shape: tuple[int, ...]) -> NDArray:
    x = data._data
    if x.ndim != len(shape) or any(n not in (1, m) for n, m in zip(x.shape, shape)):
        raise EngineError(f"{op}: cannot broadcast shape {x.shape} to {shape}")
    out = _wrap(np.broadcast_to(x, shape).copy())
    return _record1(op, out, data, lambda g, n: (_unbroadcast(g, x.shape),))


def broadcast_axis(data: NDArray, axis: Any = (), size: Any = ()) -> NDArray:
    """Stretch axes of length 1 to `size` (axis and size: ints or tuples of ints)."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    sizes = (size,) if isinstance(size, int) else tuple(size)
    if len(axes) != len(sizes):
        raise EngineError(f"broadcast_axis: {len(axes)} axes but {len(sizes)} sizes")
    shape = list(data.shape)
    for a, n in zip(axes, sizes):
        a = _axis("broadcast_axis", a, data.ndim)
        if shape[a] != 1:
            raise EngineError(f"broadcast_axis: axis {a} of shape {data.shape} is not of length 1")
        shape[a] = n
    return _broadcast("broadcast_axis", data, tuple(shape))


broadcast_axes = broadcast_axis


def broadcast_to(data: NDArray, shape: Any) -> NDArray:
    """`data` stretched to `shape` of the same rank (0 keeps the input's length of that axis)."""
    return _broadcast("broadcast_to", data, _target_shape(data.shape, shape))


def broadcast_like(
    lhs: NDArray, rhs: NDArray, lhs_axes: Any = None, rhs_axes: Any = None
) -> NDArray:
    """`lhs` broadcast to the shape of `rhs` (or its `lhs_axes` to the lengths of `rhs_axes`)."""
    if lhs_axes is None and rhs_axes is None:
        return _broadcast("broadcast_like", lhs, rhs.shape)
    if lhs_axes is None or rhs_axes is None or len(lhs_axes) != len(rhs_axes):
        raise EngineError(
            f"broadcast_like: lhs_axes {lhs_axes} and rhs_axes {rhs_axes} must pair up"
        )
    shape = list(lhs.shape)
    for a, b in zip(lhs_axes, rhs_axes):
        length = rhs.shape[_axis("broadcast_like", b, rhs.ndim)]
        shape[_axis("broadcast_like", a, lhs.ndim)] = length
    return _broadcast("broadcast_like", lhs, tuple(shape))


def _comparison(name: str, compare: Callable) -> Callable:
    def op(lhs: NDArray, rhs: NDArray) -> NDArray:
        """0/1 in the left operand's dtype; constant under autograd, as in Gluon."""
        x, y = lhs._data, rhs._data if isinstance(rhs, NDArray) else rhs
        try:
            return _wrap(compare(x, y).astype(x.dtype))
        except ValueError:
            raise _shape_error(name, x, y) from None

    op.__name__ = name
    return op


broadcast_equal = _comparison("broadcast_equal", np.equal)
broadcast_not_equal = _comparison("broadcast_not_equal", np.not_equal)
broadcast_greater = _comparison("broadcast_greater", np.greater)
broadcast_greater_equal = _comparison("broadcast_greater_equal", np.greater_equal)
broadcast_lesser = _comparison("broadcast_lesser", np.less)
broadcast_lesser_equal = _comparison("broadcast_lesser_equal", np.less_equal)
broadcast_maximum, broadcast_minimum, broadcast_power = maximum, minimum, power
equal, not_equal, greater, greater_equal, lesser, lesser_equal = (
    broadcast_equal, broadcast_not_equal, broadcast_greater, broadcast_greater_equal,
    broadcast_lesser, broadcast_lesser_equal,
)


# ---- method forms -----------------------------------------------------------------------------
def _method(function: Callable) -> Callable:
    def method(self: NDArray, *args: Any, **kwargs: Any) -> Any:
        return function(self, *args, **kwargs)

    method.__name__ = function.__name__
    method.__doc__ = function.__doc__
    return method


for _function in (slice, slice_axis, slice_like, squeeze, take, split, tile, repeat, topk, sort,
                  argsort, broadcast_axis, broadcast_like):
    setattr(NDArray, _function.__name__, _method(_function))
NDArray.broadcast_axes = NDArray.broadcast_axis  # type: ignore[attr-defined]
NDArray.broadcast_to = _method(broadcast_to)  # type: ignore[attr-defined]
