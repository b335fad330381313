"""Convolution, Deconvolution, Pooling and pad: the operators under Gluon's conv and pool layers.

A window of the (padded) input is a strided view (`sliding_window_view`), so a convolution is
one copy of the windows (im2col) and one matmul per group. Sending columns back onto the input,
one kernel offset at a time (col2im), is both a convolution's input gradient and Deconvolution's
forward, so the two operators are each other's transpose. Pooling reduces the same windows.
Layouts are channels-first (NCW, NCHW, NCDHW) or channels-last (NWC, NHWC, NDHWC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from paramstore._tape import STATE
from paramstore._tape import record as _record
from paramstore._tape import record1 as _record1
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray
from paramstore.nd.ops import _DENSE_ACTIVATIONS as _FUSED_ACTIVATIONS

__all__ = ["Convolution", "Deconvolution", "Pooling", "pad"]

_wrap = NDArray._wrap
_LAYOUTS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
_POOL_TYPES = ("max", "avg", "sum")
_ALL2 = (slice(None), slice(None))  # every sample, every channel
FUSED_ACTIVATIONS = frozenset(_FUSED_ACTIVATIONS)  # what `act_type` may name


# ---- arguments --------------------------------------------------------------------------------
def _ints(value: Any, count: int, name: str, default: int) -> tuple[int, ...]:
    """`value` as `count` ints of at least `default`: an int is repeated, () or None means
    `default` on every axis."""
    if value is None or value == ():
        return (default,) * count
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * count
    value = tuple(int(v) for v in value)
    if len(value) != count:
        raise EngineError(f"{name} must have {count} values, one per spatial axis, got {value}")
    if any(v < default for v in value):
        raise EngineError(f"{name} must be at least {default} on every axis, got {value}")
    return value


def _spatial_count(op: str, kernel: Any, layout: str | None, ndim: int) -> int:
    """How many spatial axes: from the kernel, else the layout, else an operand's rank."""
    if isinstance(kernel, (tuple, list)) and kernel:
        count = len(kernel)
    else:
        count = len(layout) - 2 if layout else ndim - 2
    if count not in _LAYOUTS:
        raise EngineError(f"{op}: there must be 1, 2 or 3 spatial axes, got kernel={kernel!r}")
    if layout is not None and layout not in _LAYOUTS[count]:
        raise EngineError(
            f"{op}: layout {layout!r} does not fit {count} spatial axes; "
            f"use one of {_LAYOUTS[count]}"
        )
    return count


def _channels_first(op: str, x: np.ndarray, spatial: int, layout: str | None) -> np.ndarray:
    """The input as (N, C, *spatial), checking its rank."""
    if x.ndim != spatial + 2:
        names = layout or _LAYOUTS[spatial][0]
        raise EngineError(
            f"{op}: input should be {spatial + 2}D in layout {names}, got shape {x.shape}"
        )
    return np.moveaxis(x, -1, 1) if layout is not None and layout[1] != "C" else x


def _restore_layout(y: np.ndarray, layout: str | None) -> np.ndarray:
    return np.moveaxis(y, 1, -1) if layout is not None and layout[1] != "C" else y


# ---- windows: im2col and col2im ---------------------------------------------------------------
class _Windows:
    """Where the windows of a convolution or pooling sit on its (padded) input.

    `before`/`after` pad each spatial axis; `out` counts the windows along each axis.
    """

    def __init__(
        self, spatial: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
        dilate: tuple[int, ...], before: tuple[int, ...], after: tuple[int, ...],
    ) -> None:
        self.spatial, self.kernel, self.stride, self.dilate = spatial, kernel, stride, dilate
        self.before, self.after = before, after
        self.extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilate))
        self.padded = tuple(n + b + a for n, b, a in zip(spatial, before, after))
        self.out = tuple(
            (p - e) // s + 1 for p, e, s in zip(self.padded, self.extent, self.stride)
        )

    def check(self, op: str, shape: tuple[int, ...]) -> None:
        if any(n <= 0 for n in self.out):
            raise EngineError(
                f"{op}: kernel {self.kernel} (dilated extent {self.extent}) is larger than the "
                f"padded input {self.padded} of input shape {shape}"
            )

    def pad(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        if not any(self.before) and not any(self.after):
            return x
        widths = [(0, 0), (0, 0)] + list(zip(self.before, self.after))
        return np.pad(x, widths, constant_values=fill)

    def columns(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """im2col: the windows of `x` (N, C, *spatial) as a new array (N, C, *kernel, *out)."""
        spatial = len(self.kernel)
        axes = tuple(range(2, 2 + spatial))
        view = sliding_window_view(self.pad(x, fill), self.extent, axis=axes)
        view = view[
            (slice(None), slice(None))
            + tuple(slice(None, None, s) for s in self.stride)
            + tuple(slice(None, None, d) for d in self.dilate)
        ]
        order = (0, 1) + tuple(range(2 + spatial, 2 + 2 * spatial)) + axes
        return np.ascontiguousarray(view.transpose(order))

    def placements(self) -> Iterator[tuple[int, tuple[int, ...], tuple[slice, ...]]]:
        """Each kernel offset: its number, itself, and where its elements of every window sit
        on the padded spatial axes (slices giving `out`)."""
        for number, offset in enumerate(np.ndindex(*self.kernel)):
            yield number, offset, tuple(
                slice(k * d, k * d + s * (o - 1) + 1, s)
                for k, d, s, o in zip(offset, self.dilate, self.stride, self.out)
            )

    def scatter(self, part: Callable[[int, tuple[int, ...]], np.ndarray], lead: tuple,
                trail: tuple, dtype: Any) -> np.ndarray:
        """col2im: add each kernel offset's part (*lead, *out, *trail) back onto the input's
        spatial shape, between the same leading and trailing axes."""
        # Windows that tile the input exactly write each element once: no zeros, no sums.
        tiles = self.extent == self.stride and all(
            o * s == p for o, s, p in zip(self.out, self.stride, self.padded))
        total = (np.empty if tiles else np.zeros)(lead + self.padded + trail, dtype=dtype)
        before, after = (slice(None),) * len(lead), (slice(None),) * len(trail)
        for number, offset, where in self.placements():
            if tiles:
                total[before + where + after] = part(number, offset)
            else:
                total[before + where + after] += part(number, offset)
        inside = tuple(slice(b, b + n) for b, n in zip(self.before, self.spatial))
        return total[before + inside + after]


# ---- convolution ------------------------------------------------------------------------------
def _grouped(columns: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, *kernel, *out) columns as (N, groups, C/groups * kernel, out positions)."""
    n = columns.shape[0]
    positions = math.prod(columns.shape[2 + (columns.ndim - 2) // 2:])
    return columns.reshape(n, groups, -1, positions)


def _correlate(x: np.ndarray, w: np.ndarray, win: _Windows, groups: int) -> tuple:
    """Each filter of `w` (O, C/groups, *kernel) slid over `x`: (N, O, *out), and the columns."""
    columns = _grouped(win.columns(x), groups)
    filters = w.reshape(groups, w.shape[0] // groups, -1)
    out = np.matmul(filters, columns).reshape((x.shape[0], w.shape[0]) + win.out)
    return out, columns


def _correlate_transpose(g: np.ndarray, w: np.ndarray, win: _Windows, groups: int) -> np.ndarray:
    """The transpose of `_correlate` in its input: (N, O, *out) -> (N, C, *spatial).

    The columns are made batch-last, (C, *kernel, *out, N), so that col2im adds runs of N or
    more contiguous numbers rather than rows as short as the output's width.
    """
    n, channels = g.shape[0], w.shape[1] * groups
    filters = w.reshape(groups, w.shape[0] // groups, -1)
    g_last = np.moveaxis(g, 0, -1).reshape(groups, w.shape[0] // groups, -1)
    columns = np.matmul(filters.transpose(0, 2, 1), g_last)
    columns = columns.reshape((channels,) + win.kernel + win.out + (n,))
    every = (slice(None),)
    total = win.scatter(lambda number, offset: columns[every + offset], (channels,), (n,),
                        columns.dtype)
    return np.ascontiguousarray(np.moveaxis(total, -1, 0))


def _filter_grad(g: np.ndarray, columns: np.ndarray, w_shape: tuple, groups: int) -> np.ndarray:
    """d(correlation)/d(filters): each output position's gradient times its window, summed."""
    g_grouped = g.reshape(g.shape[0], groups, w_shape[0] // groups, -1)
    return np.matmul(g_grouped, columns.transpose(0, 1, 3, 2)).sum(axis=0).reshape(w_shape)


def _bias_view(b: np.ndarray, spatial: int) -> np.ndarray:
    return b.reshape((-1,) + (1,) * spatial)


def _sum_but_channels(g: np.ndarray) -> np.ndarray:
    return g.sum(axis=(0,) + tuple(range(2, g.ndim)))


def _check_filters(op: str, channels: int, w: np.ndarray, groups: int) -> None:
    """Convolution's weight is (O, C/groups, *kernel); Deconvolution's (C, O/groups, *kernel)."""
    if groups < 1 or channels % groups:
        raise EngineError(f"{op}: {channels} input channels cannot form {groups} groups")
    if op == "Convolution":
        fits = w.shape[0] % groups == 0 and w.shape[1] == channels // groups
    else:
        fits = w.shape[0] == channels
    if not fits:
        raise EngineError(
            f"{op}: weight of shape {w.shape} does not fit {channels} input channels in "
            f"{groups} group(s)"
        )


def _bias_data(op: str, bias: NDArray | None, no_bias: bool, channels: int) -> Any:
    if no_bias or bias is None:
        return None
    b = bias._data
    if b.shape != (channels,):
        raise EngineError(f"{op}: bias should have shape ({channels},), got {b.shape}")
    return b


def _filters_first(op: str, w: np.ndarray, spatial: int, layout: str | None) -> np.ndarray:
    if w.ndim != spatial + 2:
        raise EngineError(f"{op}: weight should be {spatial + 2}D, got shape {w.shape}")
    return np.moveaxis(w, -1, 1) if layout is not None and layout[1] != "C" else w


def _operands(
    op: str, data: NDArray, weight: NDArray, bias: NDArray | None, kernel: Any, num_filter: int,
    num_group: int, no_bias: bool, layout: str | None,
) -> tuple[int, np.ndarray, np.ndarray, tuple[int, ...], Any]:
    """The checked operands of a (de)convolution, channels first: spatial axes, input, weight,
    kernel and bias (None without one)."""
    spatial = _spatial_count(op, kernel, layout, weight.ndim)
    x = _channels_first(op, data._data, spatial, layout)
    w = _filters_first(op, weight._data, spatial, layout)
    kernel = _ints(kernel or w.shape[2:], spatial, "kernel", 1)
    _check_filters(op, x.shape[1], w, num_group)
    if w.shape[2:] != kernel:
        raise EngineError(f"{op}: weight of shape {w.shape} does not fit kernel {kernel}")
    outputs = w.shape[0] if op == "Convolution" else w.shape[1] * num_group
    if num_filter and num_filter != outputs:
        raise EngineError(f"{op}: num_filter={num_filter} but the weight gives {outputs}")
    return spatial, x, w, kernel, _bias_data(op, bias, no_bias, outputs)


def _fused(act_type: str | None) -> Any:
    """The (in-place forward, derivative from the output) pair of a fused activation."""
    if act_type is None:
        return None
    try:
        return _FUSED_ACTIVATIONS[act_type]
    except KeyError:
        raise EngineError(
            f"unknown act_type {act_type!r}; choose one of {sorted(_FUSED_ACTIVATIONS)}"
        ) from None


def _recorded(
    op: str, y: np.ndarray, b: Any, act_type: str | None, layout: str | None, inputs: tuple,
    grads: Callable,
) -> NDArray:
    """`act(y + bias)`, in the caller's layout, on the tape; `grads(g, needs)` gives the
    channels-first gradients of the input and the weight. The activation is fused: one op,
    computed in place, its derivative taken from the output."""
    spatial = y.ndim - 2
    if b is not None:
        y += _bias_view(b, spatial)
    activation = _fused(act_type)
    if activation is not None:
        y = activation[0](y)
    out = _wrap(_restore_layout(y, layout))

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        g = _channels_first(op, g, spatial, layout)
        if activation is not None:
            g = g * activation[1](y)
        gx, gw = grads(g, needs)
        result = (
            None if gx is None else _restore_layout(gx, layout),
            None if gw is None else _restore_layout(gw, layout),
        )
        return result if b is None else result + (_sum_but_channels(g) if needs[2] else None,)

    return _record(op, out, inputs if b is not None else inputs[:2], backward)


def Convolution(
    data: NDArray,
    weight: NDArray,
    bias: NDArray | None = None,
    kernel: Any = (),
    stride: Any = (),
    dilate: Any = (),
    pad: Any = (),
    num_filter: int = 0,
    num_group: int = 1,
    no_bias: bool = False,
    layout: str | None = None,
    act_type: str | None = None,
    **ignored: Any,
) -> NDArray:
    """Cross-correlate `data` (N, C, *spatial) with `weight` (num_filter, C/num_group, *kernel).

    Output spatial size per axis: `(n + 2*pad - dilate*(kernel-1) - 1) // stride + 1`.
    Wrong ranks, channel counts or a kernel larger than the padded input raise `EngineError`.
    `act_type` (relu, sigmoid, tanh, softrelu; not in MXNet) fuses an activation into the op.
    """
    spatial, x, w, kernel, b = _operands(
        "Convolution", data, weight, bias, kernel, num_filter, num_group, no_bias, layout)
    padding = _ints(pad, spatial, "pad", 0)
    win = _Windows(x.shape[2:], kernel, _ints(stride, spatial, "stride", 1),
                   _ints(dilate, spatial, "dilate", 1), padding, padding)
    win.check("Convolution", data.shape)
    y, columns = _correlate(x, w, win, num_group)

    def grads(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        return (
            _correlate_transpose(g, w, win, num_group) if needs[0] else None,
            _filter_grad(g, columns, w.shape, num_group) if needs[1] else None,
        )

    return _recorded("Convolution", y, b, act_type, layout, (data, weight, bias), grads)


def Deconvolution(
    data: NDArray,
    weight: NDArray,
    bias: NDArray | None = None,
    kernel: Any = (),
    stride: Any = (),
    dilate: Any = (),
    pad: Any = (),
    adj: Any = (),
    target_shape: Any = (),
    num_filter: int = 0,
    num_group: int = 1,
    no_bias: bool = False,
    layout: str | None = None,
    act_type: str | None = None,
    **ignored: Any,
) -> NDArray:
    """The transpose of Convolution: `data` (N, C, *spatial) with `weight`
    (C, num_filter/num_group, *kernel) gives (N, num_filter, *out), where per axis
    `out = (n - 1)*stride - 2*pad + dilate*(kernel-1) + 1 + adj` (`adj` < stride).
    `target_shape` asks for an output size instead: `pad` and `adj` are then derived from it.
    `act_type` fuses an activation, as in Convolution."""
    spatial, x, w, kernel, b = _operands(
        "Deconvolution", data, weight, bias, kernel, num_filter, num_group, no_bias, layout)
    strides = _ints(stride, spatial, "stride", 1)
    dilation = _ints(dilate, spatial, "dilate", 1)
    padding = _ints(pad, spatial, "pad", 0)
    extra = _ints(adj, spatial, "adj", 0)
    if target_shape:
        target = _ints(target_shape, spatial, "target_shape", 0)
        excess = [
            (n - 1) * s + d * (k - 1) + 1 - t
            for n, s, d, k, t in zip(x.shape[2:], strides, dilation, kernel, target)
        ]
        if any(e < 0 for e in excess):
            raise EngineError(f"Deconvolution: target_shape {target} is too large for the input")
        padding, extra = tuple((e + 1) // 2 for e in excess), tuple(e % 2 for e in excess)
    if any(a >= s and a for a, s in zip(extra, strides)):
        raise EngineError(f"Deconvolution: adj {extra} must be smaller than stride {strides}")
    size = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + 1 + a
        for n, s, p, d, k, a in zip(x.shape[2:], strides, padding, dilation, kernel, extra)
    )
    if any(n <= 0 for n in size):
        raise EngineError(f"Deconvolution: padding {padding} leaves an empty output {size}")
    # The convolution whose input gradient this is: from `size` down to `x`'s spatial shape.
    win = _Windows(size, kernel, strides, dilation, padding, padding)
    y = _correlate_transpose(x, w, win, num_group)

    def grads(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        gx, columns = _correlate(g, w, win, num_group)
        return (
            gx if needs[0] else None,
            _filter_grad(x, columns, w.shape, num_group) if needs[1] else None,
        )

    return _recorded("Deconvolution", y, b, act_type, layout, (data, weight, bias), grads)


# ---- pooling ----------------------------------------------------------------------------------
def _pool_counts(win: _Windows, include_pad: bool) -> np.ndarray:
    """How many elements each window averages: Gluon counts the padding (not the extra
    `ceil_mode` rows) when `include_pad`, the input's own elements otherwise."""
    per_axis = []
    for n, k, s, p, o in zip(win.spatial, win.kernel, win.stride, win.before, win.out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if not include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        per_axis.append(np.maximum(end - start, 0))
    counts = per_axis[0]
    for more in per_axis[1:]:
        counts = np.multiply.outer(counts, more)
    return counts


def _pool_windows(
    x: np.ndarray, win: _Windows, pool_type: str, track: bool
) -> tuple[np.ndarray, Any]:
    """Each window's maximum or sum; with `track`, also which kernel offset held each maximum
    (the first on ties), for the backward pass.

    Small windows are read one kernel offset at a time from strided views; large ones (global
    pooling) are copied out as columns and reduced along one axis.
    """
    fill = -np.inf if pool_type == "max" else 0.0
    best = None
    if math.prod(win.kernel) > math.prod(win.out):
        columns = win.columns(x, fill).reshape(x.shape[:2] + (-1,) + win.out)
        if pool_type != "max":
            return columns.sum(axis=2), None
        if track:
            best = columns.argmax(axis=2)
            y = np.take_along_axis(columns, best[:, :, None], axis=2)[:, :, 0]
        else:
            y = columns.max(axis=2)
    else:
        padded = win.pad(x, fill)
        placements = win.placements()
        _, _, where = next(placements)
        y = padded[_ALL2 + where].copy()
        if pool_type == "max" and track:
            best = np.zeros(y.shape, np.min_scalar_type(math.prod(win.kernel)))
        for number, _, where in placements:
            part = padded[_ALL2 + where]
            if pool_type != "max":
                y += part
                continue
            if best is not None:
                # Strictly greater: the first maximum wins, as in Gluon.
                np.copyto(best, number, where=part > y)
            np.maximum(y, part, out=y)
    if pool_type == "max":
        y[np.isneginf(y)] = 0  # a window wholly in the padding has no element: Gluon gives 0
    return y, best


def Pooling(
    data: NDArray,
    kernel: Any = (),
    pool_type: str = "max",
    global_pool: bool = False,
    pooling_convention: str = "valid",
    stride: Any = (),
    pad: Any = (),
    count_include_pad: bool = True,
    layout: str | None = None,
    **ignored: Any,
) -> NDArray:
    """Max, average or sum over windows of `data` (N, C, *spatial).

    `pooling_convention='full'` (Gluon's `ceil_mode`) rounds the window count up; `global_pool`
    pools each whole channel to one value. Averages divide by the window's element count, the
    padding included when `count_include_pad`.
    """
    if pool_type not in _POOL_TYPES:
        raise EngineError(f"Pooling: pool_type must be one of {_POOL_TYPES}, got {pool_type!r}")
    if pooling_convention not in ("valid", "full"):
        raise EngineError(
            f"Pooling: pooling_convention must be 'valid' or 'full', got {pooling_convention!r}"
        )
    spatial = _spatial_count("Pooling", () if global_pool else kernel, layout, data.ndim)
    x = _channels_first("Pooling", data._data, spatial, layout)
    if global_pool:
        win = _Windows(x.shape[2:], x.shape[2:], (1,) * spatial, (1,) * spatial,
                       (0,) * spatial, (0,) * spatial)
    else:
        size = _ints(kernel, spatial, "kernel", 1)
        strides = _ints(stride, spatial, "stride", 1)
        padding = _ints(pad, spatial, "pad", 0)
        after = padding
        if pooling_convention == "full":
            rounded_up = (
                -(-(n + 2 * p - k) // s) + 1
                for n, p, k, s in zip(x.shape[2:], padding, size, strides)
            )
            after = tuple(
                max(p, (o - 1) * s + k - n - p)
                for o, s, k, n, p in zip(rounded_up, strides, size, x.shape[2:], padding)
            )
        win = _Windows(x.shape[2:], size, strides, (1,) * spatial, padding, after)
    win.check("Pooling", data.shape)
    n, c = x.shape[:2]
    y, best = _pool_windows(x, win, pool_type, STATE.recording and data._node is not None)
    counts = None
    if pool_type == "avg":
        counts = _pool_counts(win, count_include_pad).astype(x.dtype)
        y = np.divide(y, counts, out=np.zeros_like(y), where=counts > 0)
    out = _wrap(_restore_layout(y.astype(x.dtype, copy=False), layout))

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        g = _channels_first("Pooling", g, spatial, layout)
        if counts is not None:
            g = np.divide(g, counts, out=np.zeros_like(g), where=counts > 0)
        if best is None:
            grad = win.scatter(lambda number, offset: g, (n, c), (), g.dtype)
        else:
            grad = win.scatter(lambda number, offset: g * (best == number), (n, c), (), g.dtype)
        return (_restore_layout(grad, layout),)

    return _record1("Pooling", out, data, backward)


# ---- padding ----------------------------------------------------------------------------------
_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect"}


def pad(
    data: NDArray, mode: str = "constant", pad_width: Any = (), constant_value: float = 0.0
) -> NDArray:
    """Pad a 4D or 5D array: `pad_width` gives (before, after) per axis, flattened, and the
    first two axes must not be padded. Modes: constant, edge, reflect."""
    if mode not in _PAD_MODES:
        raise EngineError(f"pad: mode must be one of {sorted(_PAD_MODES)}, got {mode!r}")
    x = data._data
    if x.ndim not in (4, 5):
        raise EngineError(f"pad: input should be 4D or 5D, got shape {x.shape}")
    widths = tuple(int(v) for v in pad_width)
    if len(widths) != 2 * x.ndim or any(widths[:4]) or any(v < 0 for v in widths):
        raise EngineError(
            f"pad: pad_width must hold {2 * x.ndim} non-negative values with the first four 0, "
            f"got {pad_width}"
        )
    pairs = list(zip(widths[::2], widths[1::2]))
    if mode == "reflect" and any(b >= n or a >= n for (b, a), n in zip(pairs, x.shape)):
        raise EngineError(f"pad: reflect padding {pairs} must be smaller than the shape {x.shape}")
    if mode == "constant":
        y = np.pad(x, pairs, mode="constant", constant_values=constant_value)
    else:
        y = np.pad(x, pairs, mode=_PAD_MODES[mode])
    out = _wrap(y)

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        # Each padded axis maps output positions to source positions; the gradient adds along it.
        for axis, (before, after) in enumerate(pairs):
            if not before and not after:
                continue
            size = x.shape[axis]
            sources = np.pad(np.arange(size), (before, after), mode=_PAD_MODES[mode])
            if mode == "constant":
                sources[:before], sources[before + size:] = -1, -1
            gathers = (sources[:, None] == np.arange(size)).astype(g.dtype)
            g = np.moveaxis(np.tensordot(g, gathers, axes=(axis, 0)), -1, axis)
        return (g,)

    return _record1("pad", out, data, backward)
