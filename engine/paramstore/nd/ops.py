"""Operators with their gradients, each written once: forward on NumPy, backward beside it.

Every function takes NDArrays (or Python scalars where it makes sense), returns a new NDArray, and
records itself on the tape when autograd is recording. A backward function receives the output
gradient and `needs` (which inputs want a gradient) and returns one gradient per input.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from paramstore._tape import STATE
from paramstore._tape import record as _record
from paramstore._tape import record1 as _record1
from paramstore._tape import record2 as _record2
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray

_wrap = NDArray._wrap


def _as_array(value: Any, like: np.ndarray | None = None) -> NDArray:
    if isinstance(value, NDArray):
        return value
    dtype = like.dtype if like is not None else np.float32
    return _wrap(np.asarray(value, dtype=dtype))


def _shape_error(op: str, *arrays: np.ndarray) -> EngineError:
    """The engine's error for operands whose shapes do not fit together (never NumPy's)."""
    shapes = " and ".join(str(np.shape(array)) for array in arrays)
    return EngineError(f"{op}: operands of shapes {shapes} do not fit together")


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back down to an input's shape."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


# ---- elementwise ops, each derivative written once ----------------------------------------------
# A derivative is written with `F`, a namespace of the functions it needs: NumPy's for the first
# order (`_NUMPY`, on the arrays), this module's own ops for higher orders (`_ND`, on NDArrays,
# recorded), so the same line serves `backward` and `autograd.grad(..., create_graph=True)`.
def _log_of_positive(x: Any) -> Any:
    return np.log(np.where(x > 0, x, 1))


_NUMPY = SimpleNamespace(
    sign=np.sign, abs=np.abs, square=np.square, power=np.power, sigmoid=None,
    log_of_positive=None,
)


def _unbroadcast_nd(grad: NDArray, shape: tuple[int, ...]) -> NDArray:
    """`_unbroadcast` with recorded ops, for higher-order gradients."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = sum(grad, axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return sum(grad, axis=axes, keepdims=True) if axes else grad


def _binary(name: str, forward: Any, grads: Any) -> Any:
    def op(lhs: Any, rhs: Any) -> NDArray:
        a = _as_array(lhs, rhs._data if isinstance(rhs, NDArray) else None)
        b = _as_array(rhs, a._data)
        x, y = a._data, b._data
        try:
            out = _wrap(forward(x, y))
        except ValueError:
            raise _shape_error(name, x, y) from None
        if (a._node is None and b._node is None) or not STATE.recording:
            return out

        def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[Any, Any]:
            gx, gy = grads(_NUMPY, g, x, y, out._data, needs)
            return (
                _unbroadcast(gx, x.shape) if gx is not None else None,
                _unbroadcast(gy, y.shape) if gy is not None else None,
            )

        def graph_backward(g: NDArray, needs: tuple[bool, ...]) -> tuple[Any, Any]:
            gx, gy = grads(_ND, g, a, b, out, needs)
            return (
                _unbroadcast_nd(gx, x.shape) if gx is not None and needs[0] else None,
                _unbroadcast_nd(gy, y.shape) if gy is not None and needs[1] else None,
            )

        return _record2(name, out, a, b, backward, graph_backward)

    op.__name__ = name
    op.__doc__ = f"Elementwise {name} with broadcasting."
    return op


add = _binary("add", np.add, lambda F, g, x, y, o, n: (g, g))
subtract = _binary("subtract", np.subtract, lambda F, g, x, y, o, n: (g, -g))
multiply = _binary(
    "multiply",
    np.multiply,
    lambda F, g, x, y, o, n: (g * y if n[0] else None, g * x if n[1] else None),
)
divide = _binary(
    "divide",
    np.true_divide,
    lambda F, g, x, y, o, n: (g / y if n[0] else None, -g * o / y if n[1] else None),
)
power = _binary(
    "power",
    np.power,
    lambda F, g, x, y, o, n: (
        g * y * F.power(x, y - 1) if n[0] else None,
        g * o * F.log_of_positive(x) if n[1] else None,
    ),
)
maximum = _binary(
    "maximum", np.maximum, lambda F, g, x, y, o, n: (g * (x >= y), g * (x < y))
)
minimum = _binary(
    "minimum", np.minimum, lambda F, g, x, y, o, n: (g * (x <= y), g * (x > y))
)
broadcast_add, broadcast_sub, broadcast_mul, broadcast_div = add, subtract, multiply, divide
elemwise_add, elemwise_sub, elemwise_mul, elemwise_div = add, subtract, multiply, divide


def _unary(name: str, forward: Any, grad: Any) -> Any:
    def op(data: NDArray) -> NDArray:
        x = data._data
        out = _wrap(forward(x))
        if data._node is None or not STATE.recording:
            return out
        return _record1(name, out, data, lambda g, needs: (grad(_NUMPY, g, x, out._data),),
                        lambda g, needs: (grad(_ND, g, data, out),))

    op.__name__ = name
    op.__doc__ = f"Elementwise {name}."
    return op


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softrelu(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x).astype(x.dtype, copy=False)


_NUMPY.sigmoid, _NUMPY.log_of_positive = _sigmoid, _log_of_positive

negative = _unary("negative", np.negative, lambda F, g, x, o: -g)
abs = _unary("abs", np.abs, lambda F, g, x, o: g * F.sign(x))
exp = _unary("exp", np.exp, lambda F, g, x, o: g * o)
log = _unary("log", np.log, lambda F, g, x, o: g / x)
sqrt = _unary("sqrt", np.sqrt, lambda F, g, x, o: g / (2 * o))
square = _unary("square", np.square, lambda F, g, x, o: 2 * g * x)
relu = _unary("relu", lambda x: np.maximum(x, 0), lambda F, g, x, o: g * (x > 0))
sigmoid = _unary("sigmoid", _sigmoid, lambda F, g, x, o: g * o * (1 - o))
tanh = _unary("tanh", np.tanh, lambda F, g, x, o: g * (1 - o * o))
softrelu = _unary("softrelu", _softrelu, lambda F, g, x, o: g * F.sigmoid(x))
sign = _unary("sign", np.sign, lambda F, g, x, o: g * 0)
softsign = _unary(
    "softsign", lambda x: x / (1 + np.abs(x)), lambda F, g, x, o: g / F.square(1 + F.abs(x))
)

_ACTIVATIONS = {
    "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softrelu": softrelu, "softsign": softsign,
}


def Activation(data: NDArray, act_type: str) -> NDArray:
    """Apply the activation named `act_type` (relu, sigmoid, tanh, softrelu, softsign)."""
    try:
        return _ACTIVATIONS[act_type](data)
    except KeyError:
        raise ValueError(
            f"unknown act_type {act_type!r}; choose one of {sorted(_ACTIVATIONS)}"
        ) from None


def clip(data: NDArray, a_min: float, a_max: float) -> NDArray:
    x = data._data
    out = _wrap(np.clip(x, a_min, a_max))
    return _record1("clip", out, data, lambda g, n: (g * ((x >= a_min) & (x <= a_max)),))


# ---- reductions -------------------------------------------------------------------------------
def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None or axis == ():
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


def _reduced(value: np.ndarray, axis: Any) -> np.ndarray:
    # Reducing everything gives shape (1,), never a 0-d array.
    return value.reshape(1) if value.ndim == 0 else value


def _expand(g: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return np.broadcast_to(g.reshape(kept), shape)


def _expand_nd(g: NDArray, data: NDArray, axes: tuple[int, ...]) -> NDArray:
    """`_expand` with recorded ops, for higher-order gradients."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(data.shape))
    return multiply(reshape(g, kept), _wrap(np.ones(data.shape, data._data.dtype)))


def sum(data: NDArray, axis: Any = None, keepdims: bool = False) -> NDArray:
    x = data._data
    axes = _axes(axis, x.ndim)
    out = _wrap(_reduced(np.sum(x, axis=axes, keepdims=keepdims), axis))
    return _record1("sum", out, data, lambda g, n: (_expand(g, x.shape, axes).copy(),),
                    lambda g, n: (_expand_nd(g, data, axes),))


def mean(data: NDArray, axis: Any = None, keepdims: bool = False) -> NDArray:
    x = data._data
    axes = _axes(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    out = _wrap(_reduced(np.mean(x, axis=axes, keepdims=keepdims), axis))
    return _record1("mean", out, data, lambda g, n: (_expand(g / count, x.shape, axes).copy(),),
                    lambda g, n: (_expand_nd(g / count, data, axes),))


def _extreme(name: str, reduce: Any) -> Any:
    def op(data: NDArray, axis: Any = None, keepdims: bool = False) -> NDArray:
        x = data._data
        axes = _axes(axis, x.ndim)
        value = reduce(x, axis=axes, keepdims=True)
        out = _wrap(_reduced(value if keepdims else value.reshape(
            tuple(d for i, d in enumerate(x.shape) if i not in axes)), axis))

        def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
            hit = x == value
            return (_expand(g, x.shape, axes) * hit / hit.sum(axis=axes, keepdims=True),)

        return _record1(name, out, data, backward)

    op.__name__ = name
    return op


max = _extreme("max", np.max)
min = _extreme("min", np.min)


def norm(data: NDArray, ord: int = 2, axis: Any = None, keepdims: bool = False) -> NDArray:
    """The L2 (or, with `ord=1`, L1) norm over `axis` (everything by default)."""
    if ord == 1:
        return sum(abs(data), axis=axis, keepdims=keepdims)
    if ord != 2:
        raise ValueError(f"norm: ord must be 1 or 2, got {ord}")
    return sqrt(sum(square(data), axis=axis, keepdims=keepdims))


def argmax(data: NDArray, axis: Any = None, keepdims: bool = False) -> NDArray:
    """Indices of the maxima, as floats (Gluon's convention); not differentiable."""
    x = data._data
    index = np.argmax(x, axis=axis, keepdims=keepdims) if axis is not None else np.argmax(x)
    return _wrap(np.asarray(index, dtype=x.dtype).reshape(-1) if axis is None else
                 index.astype(x.dtype))


# ---- shape ------------------------------------------------------------------------------------
def _target_shape(shape: tuple[int, ...], spec: Any) -> tuple[int, ...]:
    spec = (spec,) if isinstance(spec, int) else tuple(spec)
    # 0 copies the input's dimension at that position; -1 is inferred.
    return tuple(shape[i] if d == 0 else d for i, d in enumerate(spec))


def reshape(data: NDArray, shape: Any) -> NDArray:
    x = data._data
    target = _target_shape(x.shape, shape)
    try:
        out = _wrap(x.reshape(target))
    except ValueError:
        raise EngineError(f"reshape: cannot reshape an array of shape {x.shape} into "
                          f"{target}") from None
    return _record1("reshape", out, data, lambda g, n: (g.reshape(x.shape),))


def flatten(data: NDArray) -> NDArray:
    """Collapse every axis after the first: (N, a, b) -> (N, a*b)."""
    return reshape(data, (data.shape[0], -1))


Flatten = flatten


def transpose(data: NDArray, axes: Any = None) -> NDArray:
    x = data._data
    perm = tuple(axes) if axes else tuple(reversed(range(x.ndim)))
    inverse = tuple(np.argsort(perm))
    out = _wrap(x.transpose(perm))
    return _record1("transpose", out, data, lambda g, n: (g.transpose(inverse),))


def expand_dims(data: NDArray, axis: int) -> NDArray:
    x = data._data
    out = _wrap(np.expand_dims(x, axis))
    return _record1("expand_dims", out, data, lambda g, n: (g.reshape(x.shape),))


def concat(*data: NDArray, dim: int = 1) -> NDArray:
    arrays = [a._data for a in data]
    try:
        out = _wrap(np.concatenate(arrays, axis=dim))
    except ValueError:
        raise _shape_error("concat", *arrays) from None
    bounds = np.cumsum([a.shape[dim] for a in arrays])[:-1]
    return _record("concat", out, data, lambda g, n: tuple(np.split(g, bounds, axis=dim)))


def stack(*data: NDArray, axis: int = 0) -> NDArray:
    try:
        out = _wrap(np.stack([a._data for a in data], axis=axis))
    except ValueError:
        raise _shape_error("stack", *[a._data for a in data]) from None
    count = len(data)
    return _record(
        "stack",
        out,
        data,
        lambda g, n: tuple(np.squeeze(part, axis) for part in np.split(g, count, axis=axis)),
    )


# ---- linear algebra ---------------------------------------------------------------------------
def dot(
    lhs: NDArray, rhs: NDArray, transpose_a: bool = False, transpose_b: bool = False
) -> NDArray:
    """Matrix product (of 1-D or 2-D arrays), optionally of transposed operands."""
    a, b = lhs._data, rhs._data
    x = a.T if transpose_a else a
    y = b.T if transpose_b else b
    try:
        out = _wrap(np.dot(x, y))
    except ValueError:
        raise _shape_error("dot", x, y) from None
    if not STATE.recording:
        return out

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[Any, Any]:
        g2 = g.reshape(x.shape[0] if x.ndim > 1 else 1, -1)
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(1, -1)
        y2 = y.reshape(y.shape[0], -1)
        gx = (g2 @ y2.T).reshape(x.shape) if needs[0] else None
        gy = (x2.T @ g2).reshape(y.shape) if needs[1] else None
        return (
            None if gx is None else (gx.T if transpose_a else gx),
            None if gy is None else (gy.T if transpose_b else gy),
        )

    return _record2("dot", out, lhs, rhs, backward)


def FullyConnected(
    data: NDArray,
    weight: NDArray,
    bias: NDArray | None = None,
    num_hidden: int | None = None,
    no_bias: bool = False,
    flatten: bool = True,
) -> NDArray:
    """`y = x W^T + b`, with `W` of shape (units, in_units); `flatten` folds trailing axes of x."""
    return dense(data, weight, None if no_bias else bias, None, flatten)


# Each activation as (forward that may reuse its input's memory, derivative from the output).
_DENSE_ACTIVATIONS = {
    "relu": (lambda y: np.maximum(y, 0, out=y), lambda o: o > 0),
    "sigmoid": (_sigmoid, lambda o: o * (1 - o)),
    "tanh": (lambda y: np.tanh(y, out=y), lambda o: 1 - o * o),
    "softrelu": (_softrelu, lambda o: 1 - np.exp(-o)),
}


def dense(
    data: NDArray,
    weight: NDArray,
    bias: NDArray | None,
    act_type: str | None = None,
    flatten: bool = True,
) -> NDArray:
    """`act(x W^T + b)` as one op on the tape: a Dense layer's whole forward.

    `act_type` is None (linear), relu, sigmoid or tanh. One op instead of two halves the
    tape's work per layer, which is what small networks spend their time on.
    """
    x_full, w = data._data, weight._data
    x = x_full.reshape(x_full.shape[0], -1) if flatten and x_full.ndim != 2 else x_full
    try:
        y = np.dot(x, w.T)
    except ValueError:
        raise _shape_error("FullyConnected", x, w) from None
    if bias is not None:
        y += bias._data
    activation_grad = None
    if act_type is not None:
        try:
            activate, activation_grad = _DENSE_ACTIVATIONS[act_type]
        except KeyError:
            raise ValueError(
                f"unknown act_type {act_type!r}; choose one of {sorted(_DENSE_ACTIVATIONS)}"
            ) from None
        y = activate(y)
    out = _wrap(y)
    if not STATE.recording:
        return out

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        if activation_grad is not None:
            g = g * activation_grad(y)
        g2 = g if g.ndim == 2 else g.reshape(-1, g.shape[-1])
        gx = np.dot(g2, w).reshape(x_full.shape) if needs[0] else None
        gw = np.dot(g2.T, x if x.ndim == 2 else x.reshape(-1, x.shape[-1])) if needs[1] else None
        if len(needs) == 2:
            return gx, gw
        return gx, gw, (g2.sum(axis=0) if needs[2] else None)

    if bias is None:
        return _record2("dense", out, data, weight, backward)
    return _record("dense", out, (data, weight, bias), backward)


# ---- classification helpers -------------------------------------------------------------------
def softmax(data: NDArray, axis: int = -1) -> NDArray:
    x = data._data
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    o = shifted / shifted.sum(axis=axis, keepdims=True)
    out = _wrap(o)
    return _record1(
        "softmax", out, data, lambda g, n: (o * (g - (g * o).sum(axis=axis, keepdims=True)),)
    )


def log_softmax(data: NDArray, axis: int = -1) -> NDArray:
    x = data._data
    shifted = x - x.max(axis=axis, keepdims=True)
    o = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    out = _wrap(o)
    return _record1("log_softmax", out, data,
        lambda g, n: (g - np.exp(o) * g.sum(axis=axis, keepdims=True),),
    )


def _pick_index(x: np.ndarray, index: Any, axis: int, mode: str) -> tuple:
    """A fancy index taking, along `axis`, the element each position of `index` names.

    Float indices truncate toward zero; out-of-range ones clip (`mode='clip'`) or wrap.
    """
    raw = index._data if isinstance(index, NDArray) else np.asarray(index)
    positions = raw.astype(np.int64).reshape(x.shape[:axis] + x.shape[axis + 1 :])
    size = x.shape[axis]
    if mode == "clip":
        # In place on our own copy; np.clip costs several times more on small arrays.
        np.minimum(np.maximum(positions, 0, out=positions), size - 1, out=positions)
    else:
        positions = np.mod(positions, size)
    if x.ndim == 2 and axis == 1:
        return (np.arange(x.shape[0]), positions)
    grids = np.indices(positions.shape, sparse=True)
    return tuple(grids[:axis]) + (positions,) + tuple(grids[axis:])


def pick(
    data: NDArray, index: NDArray, axis: int = -1, mode: str = "clip", keepdims: bool = False
) -> NDArray:
    """Pick one element along `axis` per position: `data[i, index[i]]` for 2-D data."""
    x = data._data
    axis = axis % x.ndim
    where = _pick_index(x, index, axis, mode)
    picked = x[where]
    out = _wrap(np.expand_dims(picked, axis) if keepdims else picked)

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        full = np.zeros_like(x)
        full[where] = g.reshape(picked.shape)
        return (full,)

    return _record1("pick", out, data, backward)


def sparse_softmax_cross_entropy(
    data: NDArray, label: NDArray, axis: int = -1, keepdims: bool = False
) -> NDArray:
    """`-log(softmax(data))` at each label's class along `axis`, as one op.

    The same as `-pick(log_softmax(data, axis), label, axis)` (labels truncate and clip alike);
    its gradient is `softmax - one_hot(label)`, computed without the intermediate graph.
    """
    x = data._data
    axis = axis % x.ndim
    shifted = x - x.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=axis, keepdims=True)
    where = _pick_index(x, label, axis, "clip")
    loss = np.log(np.squeeze(total, axis)) - shifted[where]
    out = _wrap(np.expand_dims(loss, axis) if keepdims else loss)

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        per_position = g.reshape(loss.shape)
        grad = exp / total * np.expand_dims(per_position, axis)
        grad[where] -= per_position
        return (grad,)

    return _record1("sparse_softmax_cross_entropy", out, data, backward)


def one_hot(
    indices: NDArray, depth: int, on_value: float = 1.0, off_value: float = 0.0, dtype: Any = None
) -> NDArray:
    positions = np.asarray(indices._data).astype(np.int64)
    result = np.full(positions.shape + (depth,), off_value, dtype=dtype or np.float32)
    valid = (positions >= 0) & (positions < depth)
    np.put_along_axis(
        result, np.expand_dims(np.where(valid, positions, 0), -1),
        np.expand_dims(np.where(valid, on_value, off_value), -1).astype(result.dtype), axis=-1,
    )
    return _wrap(result)


def Dropout(data: NDArray, p: float = 0.5, axes: tuple[int, ...] = ()) -> NDArray:
    """Zero elements with probability p and scale the rest by 1/(1-p), in training mode only."""
    if not STATE.training or p <= 0:
        return data
    from paramstore.random import generator

    x = data._data
    mask_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    mask = (generator().random(mask_shape) >= p).astype(x.dtype) / np.float32(1 - p)
    out = _wrap(x * mask)
    return _record1("Dropout", out, data, lambda g, n: (g * mask,))


def Embedding(data: NDArray, weight: NDArray, input_dim: int = 0, output_dim: int = 0) -> NDArray:
    """Rows of `weight` looked up by the (float or int) indices in `data`."""
    positions = np.clip(data._data.astype(np.int64), 0, weight.shape[0] - 1)
    w = weight._data
    out = _wrap(w[positions])

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        full = np.zeros_like(w)
        np.add.at(full, positions, g)
        return (None, full)

    return _record("Embedding", out, (data, weight), backward)


def where(condition: NDArray, x: NDArray, y: NDArray) -> NDArray:
    """`x` where `condition` is non-zero, else `y`; a 1-D condition picks whole rows."""
    mask = condition._data != 0
    rows = mask.ndim == 1 and x.ndim > 1 and mask.shape[0] == x.shape[0]
    if x.shape != y.shape or (mask.shape != x.shape and not rows):
        raise _shape_error("where", mask, x._data, y._data)
    if rows:
        mask = mask.reshape(mask.shape + (1,) * (x.ndim - 1))
    out = _wrap(np.where(mask, x._data, y._data))
    return _record("where", out, (condition, x, y), lambda g, n: (None, g * mask, g * ~mask))


def _log_of_positive_nd(x: NDArray) -> NDArray:
    return log(where(x > 0, x, x * 0 + 1))


# The functions higher-order derivatives use: this module's recorded ops.
_ND = SimpleNamespace(
    sign=sign, abs=abs, square=square, power=power, sigmoid=sigmoid,
    log_of_positive=_log_of_positive_nd,
)
