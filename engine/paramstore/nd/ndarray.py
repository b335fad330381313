"""`NDArray`: a NumPy array with Gluon's printing, indexing and dtype rules.

Data lives in `_data` (a `numpy.ndarray`); `_node` is the array's place on the tape (None when it
is not part of a recorded computation). Basic indexing returns views, so writing through
`param.data()[0, 0] = 42` changes the parameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from paramstore import _tape
from paramstore._tape import Leaf, Node
from paramstore.context import Context, current_context
from paramstore.dtypes import numpy_dtype

DEFAULT_DTYPE = np.float32
_CPU0 = Context("cpu", 0)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


class NDArray:
    # `_ctx` is None on the default context, cpu(0), and names any other.
    __slots__ = ("_data", "_node", "_ctx", "__weakref__")
    __array_ufunc__ = None  # numpy defers to our reflected operators: np_array + nd_array
    __hash__ = object.__hash__

    def __init__(self, data: Any, dtype: Any = None) -> None:
        self._data = np.asarray(data, dtype=dtype)
        self._node: Node | None = None
        self._ctx: Context | None = None

    @staticmethod
    def _wrap(data: np.ndarray) -> NDArray:
        out = object.__new__(NDArray)
        out._data = data
        out._node = None
        out._ctx = None
        return out

    # ---- description -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> type:
        return self._data.dtype.type

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def context(self) -> Context:
        return getattr(self, "_ctx", None) or _CPU0

    ctx = context

    @property
    def stype(self) -> str:
        return "default"

    def __repr__(self) -> str:
        return f"\n{self._data}\n<NDArray {_shape_text(self.shape)} @{self.context}>"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[NDArray]:
        for i in range(len(self._data)):
            yield self[i]

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise ValueError(
                "The truth value of an NDArray with multiple elements is ambiguous."
            )
        return bool(self._data.flat[0])

    def __float__(self) -> float:
        return float(self.asscalar())

    def __int__(self) -> int:
        return int(self.asscalar())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    # ---- conversion --------------------------------------------------------------------------
    def asnumpy(self) -> np.ndarray:
        """A copy of the data as a NumPy array."""
        return self._data.copy()

    def asscalar(self) -> Any:
        if self._data.size != 1:
            raise ValueError("The current array is not a scalar")
        return self._data.reshape(-1)[0]

    def astype(self, dtype: Any, copy: bool = True) -> NDArray:
        if not copy and np.dtype(dtype) == self._data.dtype:
            return self
        return NDArray._wrap(self._data.astype(dtype))

    def copy(self) -> NDArray:
        return NDArray._wrap(self._data.copy())

    def copyto(self, other: Any) -> NDArray:
        """Copy into `other` (an NDArray of the same shape) or to a new array on a context."""
        if isinstance(other, NDArray):
            np.copyto(other._data, self._data, casting="unsafe")
            return other
        return _placed(self._data.copy(), other)

    def as_in_context(self, context: Context) -> NDArray:
        """This array when it is on `context`, else a copy placed there."""
        if context == self.context:
            return self
        return _placed(self._data.copy(), context)

    as_in_ctx = as_in_context

    def detach(self) -> NDArray:
        """The same data, cut off from the tape."""
        return NDArray._wrap(self._data)

    def wait_to_read(self) -> None:
        """Operations run eagerly, so data is always ready."""

    def tolist(self) -> list:
        return self._data.tolist()

    # ---- gradients ---------------------------------------------------------------------------
    def attach_grad(self, grad_req: str = "write", stype: str | None = None) -> None:
        """Allocate a zero gradient buffer and make this array a variable for backward."""
        self._node = Leaf(np.zeros_like(self._data), grad_req)

    @property
    def grad(self) -> NDArray | None:
        node = self._node
        return NDArray._wrap(node.grad) if isinstance(node, Leaf) else None

    def backward(
        self, out_grad: NDArray | None = None, retain_graph: bool = False, train_mode: bool = True
    ) -> None:
        from paramstore import autograd

        autograd.backward(self, None if out_grad is None else [out_grad], retain_graph)

    # ---- indexing ----------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> NDArray:
        key = _index(key)
        data = self._data
        if _is_full_integer_index(key, data.ndim):
            # Gluon returns a one-element array (not a scalar) for a full integer index.
            out = NDArray._wrap(data[key].reshape(1))
        else:
            out = NDArray._wrap(data[key])
        return _tape.record1("getitem", out, self, _scatter(data.shape, key))

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[_index(key)] = value._data if isinstance(value, NDArray) else value

    # ---- arithmetic (defined in ops, attached below) -----------------------------------------
    @property
    def T(self) -> NDArray:
        return ops.transpose(self)

    def reshape(self, *shape: Any, **kwargs: Any) -> NDArray:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape or kwargs["shape"])

    def __neg__(self) -> NDArray:
        return ops.negative(self)

    def __abs__(self) -> NDArray:
        return ops.abs(self)

    def __add__(self, other: Any) -> NDArray:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> NDArray:
        return ops.add(other, self)

    def __sub__(self, other: Any) -> NDArray:
        return ops.subtract(self, other)

    def __rsub__(self, other: Any) -> NDArray:
        return ops.subtract(other, self)

    def __mul__(self, other: Any) -> NDArray:
        return ops.multiply(self, other)

    def __rmul__(self, other: Any) -> NDArray:
        return ops.multiply(other, self)

    def __truediv__(self, other: Any) -> NDArray:
        return ops.divide(self, other)

    def __rtruediv__(self, other: Any) -> NDArray:
        return ops.divide(other, self)

    def __pow__(self, other: Any) -> NDArray:
        return ops.power(self, other)

    def __rpow__(self, other: Any) -> NDArray:
        return ops.power(other, self)

    def __matmul__(self, other: Any) -> NDArray:
        return ops.dot(self, other)

    def __mod__(self, other: Any) -> NDArray:
        return NDArray._wrap(np.mod(self._data, _raw(other)).astype(self._data.dtype, copy=False))

    # In-place operators write into the array's memory (views included) and are not recorded.
    def __iadd__(self, other: Any) -> NDArray:
        self._data += _raw(other)
        return self

    def __isub__(self, other: Any) -> NDArray:
        self._data -= _raw(other)
        return self

    def __imul__(self, other: Any) -> NDArray:
        self._data *= _raw(other)
        return self

    def __itruediv__(self, other: Any) -> NDArray:
        self._data /= _raw(other)
        return self

    # Comparisons give 0/1 in the array's own dtype, as Gluon's do.
    def _compare(self, other: Any, compare: Any) -> NDArray:
        return NDArray._wrap(compare(self._data, _raw(other)).astype(self._data.dtype))

    def __eq__(self, other: Any) -> NDArray:  # type: ignore[override]
        return self._compare(other, np.equal)

    def __ne__(self, other: Any) -> NDArray:  # type: ignore[override]
        return self._compare(other, np.not_equal)

    def __lt__(self, other: Any) -> NDArray:
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> NDArray:
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> NDArray:
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> NDArray:
        return self._compare(other, np.greater_equal)

    # ---- method forms of common ops ----------------------------------------------------------
    def abs(self) -> NDArray:
        return ops.abs(self)

    def exp(self) -> NDArray:
        return ops.exp(self)

    def log(self) -> NDArray:
        return ops.log(self)

    def sqrt(self) -> NDArray:
        return ops.sqrt(self)

    def square(self) -> NDArray:
        return ops.square(self)

    def relu(self) -> NDArray:
        return ops.relu(self)

    def sigmoid(self) -> NDArray:
        return ops.sigmoid(self)

    def tanh(self) -> NDArray:
        return ops.tanh(self)

    def softmax(self, axis: int = -1) -> NDArray:
        return ops.softmax(self, axis=axis)

    def log_softmax(self, axis: int = -1) -> NDArray:
        return ops.log_softmax(self, axis=axis)

    def sum(self, axis: Any = None, keepdims: bool = False) -> NDArray:
        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> NDArray:
        return ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> NDArray:
        return ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> NDArray:
        return ops.min(self, axis=axis, keepdims=keepdims)

    def norm(self, ord: int = 2, axis: Any = None, keepdims: bool = False) -> NDArray:
        return ops.norm(self, ord=ord, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> NDArray:
        return ops.argmax(self, axis=axis, keepdims=keepdims)

    def transpose(self, axes: Any = None) -> NDArray:
        return ops.transpose(self, axes)

    def flatten(self) -> NDArray:
        return ops.flatten(self)

    def expand_dims(self, axis: int) -> NDArray:
        return ops.expand_dims(self, axis)

    def clip(self, a_min: float, a_max: float) -> NDArray:
        return ops.clip(self, a_min, a_max)

    def one_hot(self, depth: int, on_value: float = 1.0, off_value: float = 0.0) -> NDArray:
        return ops.one_hot(self, depth, on_value, off_value)

    def zeros_like(self) -> NDArray:
        return NDArray._wrap(np.zeros_like(self._data))

    def ones_like(self) -> NDArray:
        return NDArray._wrap(np.ones_like(self._data))


def _placed(data: np.ndarray, ctx: Context | None) -> NDArray:
    """An array of `data` on `ctx` (the default context when None)."""
    out = NDArray._wrap(data)
    if ctx is not None and ctx != _CPU0:
        out._ctx = ctx
    return out


def _raw(value: Any) -> Any:
    return value._data if isinstance(value, NDArray) else value


def _index(key: Any) -> Any:
    if isinstance(key, NDArray):
        return key._data.astype(np.int64)
    if isinstance(key, tuple):
        return tuple(k._data.astype(np.int64) if isinstance(k, NDArray) else k for k in key)
    return key


def _is_full_integer_index(key: Any, ndim: int) -> bool:
    if isinstance(key, (int, np.integer)):
        return ndim == 1
    return (
        isinstance(key, tuple)
        and len(key) == ndim
        and all(isinstance(k, (int, np.integer)) for k in key)
    )


def _scatter(shape: tuple[int, ...], key: Any) -> _tape.Backward:
    def backward(grad: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
        full = np.zeros(shape, dtype=grad.dtype)
        np.add.at(full, key, grad.reshape(full[key].shape))
        return (full,)

    return backward


def array(source: Any, ctx: Context | None = None, dtype: Any = None) -> NDArray:
    """A new array (float32 unless `dtype` says otherwise, whatever the source's dtype)."""
    if isinstance(source, NDArray):
        data = source._data.astype(numpy_dtype(dtype) if dtype is not None
                                   else source._data.dtype)
    else:
        data = np.array(source, dtype=numpy_dtype(dtype) if dtype is not None
                        else DEFAULT_DTYPE)
    return _placed(data, ctx)


def _creation(fill: Any) -> Any:
    def create(shape: Any, ctx: Context | None = None, dtype: Any = None, **kwargs: Any) -> NDArray:
        return _placed(fill(shape, dtype=numpy_dtype(dtype or DEFAULT_DTYPE)), ctx)

    return create


zeros = _creation(np.zeros)
ones = _creation(np.ones)
empty = _creation(np.zeros)


def full(shape: Any, val: float, ctx: Context | None = None, dtype: Any = None) -> NDArray:
    return _placed(np.full(shape, val, dtype=dtype or DEFAULT_DTYPE), ctx)


def arange(
    start: float,
    stop: float | None = None,
    step: float = 1.0,
    repeat: int = 1,
    ctx: Context | None = None,
    dtype: Any = None,
) -> NDArray:
    values = np.arange(start, stop, step, dtype=dtype or DEFAULT_DTYPE)
    return _placed(np.repeat(values, repeat) if repeat != 1 else values, ctx)


def zeros_like(like: NDArray) -> NDArray:
    return NDArray._wrap(np.zeros_like(like._data))


def ones_like(like: NDArray) -> NDArray:
    return NDArray._wrap(np.ones_like(like._data))


def default_context() -> Context:
    return current_context()


def waitall() -> None:
    """Operations run eagerly; nothing to wait for."""


from paramstore.nd import ops  # noqa: E402  (ops builds on NDArray)
