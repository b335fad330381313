"""`Parameter`, `Constant` and `ParameterDict`: named arrays with gradients, as Gluon has them.

A Parameter is in one of three states: uninitialized, deferred (an initializer and contexts are
remembered until the first forward pass tells the shape), or initialized (one data array per
context). Every `data()` call returns the same `NDArray` object, so in-place writes through it
change the parameter. The gradient buffer belongs to the data array's tape leaf
(`arr._node = Leaf(buffer, grad_req)`), which is what `backward` writes into; with
`grad_req='null'` the array has no leaf and is not differentiated.

Error types and messages are Gluon's, word for word, including its `AssertionError`s.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np

from paramstore import autograd
from paramstore import init as initializer
from paramstore._tape import Leaf
from paramstore.base import EngineError
from paramstore.context import Context, cpu, current_context
from paramstore.nd.ndarray import NDArray, _placed, array

__all__ = ["Constant", "DeferredInitializationError", "Parameter", "ParameterDict", "brief_list"]

GRAD_REQS = ("write", "add", "null")
NAMING_HELP = "For more info on naming, see the 'Naming' section of the paramstore README."

_NOT_INITIALIZED = (
    "Parameter '{name}' has not been initialized. Note that you should initialize parameters "
    "and create Trainer with Block.collect_params() instead of Block.params because the later "
    "does not include Parameters of nested child Blocks"
)
_DEFERRED = (
    "Parameter '{name}' has not been initialized yet because initialization was deferred. "
    "Actual initialization happens during the first forward pass. Please pass one batch of data "
    "through the network before accessing Parameters. You can also avoid deferred "
    "initialization by specifying in_units, num_features, etc., for network layers."
)


class DeferredInitializationError(EngineError):
    """A parameter's data was read before the first forward pass could tell its shape."""


def brief_list(names: Any, limit: int = 7) -> str:
    """Names quoted and joined with ', '; more than `limit`: the first 3, '...', the last 4."""
    names = list(names)
    if len(names) > limit:
        return f"{brief_list(names[:limit // 2], limit)}, ..., {brief_list(names[-limit // 2:])}"
    return ", ".join(f"'{name}'" for name in names)


def _shape_known(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and all(dim > 0 for dim in shape)


class _Load(NamedTuple):
    """A validated load of one parameter, applied only once every parameter has validated."""

    param: Parameter
    data: np.ndarray
    shape: tuple[int, ...]
    dtype: Any
    contexts: list[Context] | None  # None: the parameter is initialized, write in place


class Parameter:
    """A named array (one copy per context) with its gradient, initializer and optimizer hints.

    `shape` may hold 0 for dimensions unknown until the first forward; an int is a 1-tuple.
    `dtype` is kept as given (its repr shows it so). `grad_req` is 'write', 'add' or 'null'
    (always 'null' when `differentiable=False`). `init` is None, an Initializer or a registry
    name/JSON. `lr_mult` and `wd_mult` scale the optimizer's learning rate and weight decay.
    """

    def __init__(
        self,
        name: str,
        grad_req: str = "write",
        shape: int | tuple[int, ...] | None = None,
        dtype: Any = np.float32,
        lr_mult: float = 1.0,
        wd_mult: float = 1.0,
        init: Any = None,
        allow_deferred_init: bool = False,
        differentiable: bool = True,
        stype: str = "default",
        grad_stype: str = "default",
    ) -> None:
        # The data array when the parameter lives on exactly one context: what forward reads.
        self._single: NDArray | None = None
        self._arrays: list[NDArray] | None = None
        self._grads: list[NDArray] | None = None
        self._ctx_list: list[Context] | None = None
        # (init, contexts, default_init, pending data) while initialization waits for a shape.
        self._deferred_init: tuple = ()
        self._differentiable = differentiable
        self._allow_deferred_init = allow_deferred_init
        self._grad_req: str | None = None
        self._shape = (shape,) if isinstance(shape, int) else shape
        self.name = name
        self._dtype = dtype
        self.lr_mult = lr_mult
        self.wd_mult = wd_mult
        self.init = init
        for label, value in (("grad_stype", grad_stype), ("stype", stype)):
            if value not in _STORAGE_TYPES:
                raise AssertionError(
                    f"{label} for Parameter '{name}' must be one of 'default', 'row_sparse', "
                    f"or 'csr', but got '{value}'"
                )
        self._stype = stype
        self._grad_stype = grad_stype
        self.grad_req = grad_req

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.name} (shape={self.shape}, dtype={self.dtype})"

    # ---- attributes --------------------------------------------------------------------------
    @property
    def grad_req(self) -> str:
        return self._grad_req  # type: ignore[return-value]

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in GRAD_REQS:
            raise AssertionError(
                f"grad_req must be one of 'write', 'add', or 'null', but got '{req}'"
            )
        if not self._differentiable:
            req = "null"
        if self._grad_req == req:
            return
        self._grad_req = req
        if self._arrays is not None:
            self._attach_grads()

    @property
    def shape(self) -> tuple[int, ...] | None:
        return self._shape

    @shape.setter
    def shape(self, new_shape: tuple[int, ...]) -> None:
        if self._shape is None:
            self._shape = new_shape
            return
        if len(self._shape) != len(new_shape) or any(
            old not in (0, new) for new, old in zip(new_shape, self._shape)
        ):
            raise AssertionError(
                f"Expected shape {new_shape} is incompatible with given shape {self._shape}."
            )
        self._shape = tuple(new_shape)

    @property
    def dtype(self) -> Any:
        return self._dtype

    @dtype.setter
    def dtype(self, dtype: Any) -> None:
        self.cast(dtype)

    @property
    def stype(self) -> str:
        return self._stype

    # ---- initialization ----------------------------------------------------------------------
    def initialize(
        self,
        init: Any = None,
        ctx: Context | list[Context] | None = None,
        default_init: Any = None,
        force_reinit: bool = False,
    ) -> None:
        """Create the data (now if the shape is known, else at the first forward pass).

        The initializer is `init` if given, else the parameter's own `init`, else
        `default_init` (Uniform(0.07) when None). `ctx` defaults to the current context.
        An initialized parameter only warns unless `force_reinit`. Raises `ValueError` when
        the shape is unknown and deferral is not allowed.
        """
        if default_init is None:
            default_init = initializer.Uniform()
        if self._arrays is not None and not force_reinit:
            warnings.warn(
                f"Parameter '{self.name}' is already initialized, ignoring. Set "
                "force_reinit=True to re-initialize.",
                stacklevel=2,
            )
            return
        self._drop_data()
        contexts = _context_list(ctx)
        if init is None:
            init = default_init if self.init is None else self.init
        self._deferred_init = (init, contexts, default_init, None)
        if not _shape_known(self._shape):
            if self._allow_deferred_init:
                return
            self._deferred_init = ()
            raise ValueError(
                f"Cannot initialize Parameter '{self.name}' because it has invalid shape: "
                f"{self._shape}."
            )
        self._finish_deferred_init()

    def _finish_deferred_init(self) -> None:
        """Run the remembered initialization now that the shape is known (no-op otherwise)."""
        if not self._deferred_init:
            return
        init, contexts, default_init, data = self._deferred_init
        self._deferred_init = ()
        if not _shape_known(self._shape):
            raise AssertionError(
                f"Cannot initialize Parameter '{self.name}' because it has invalid shape: "
                f"{self._shape}. Please specify in_units, in_channels, etc for `Block`s."
            )
        if data is None:
            fresh = NDArray._wrap(np.zeros(self._shape, dtype=np.dtype(self._dtype)))
            with autograd.pause():  # an initializer's arithmetic is never part of a graph
                initializer.create(default_init)(
                    initializer.InitDesc(self.name, {"__init__": init}), fresh
                )
            data = fresh._data
        self._set_arrays(np.asarray(data), contexts)

    def _set_arrays(self, data: np.ndarray, contexts: list[Context]) -> None:
        """One fresh copy of `data` per context, with zero gradients."""
        self._ctx_list = list(contexts)
        self._arrays = [
            _placed(np.array(data, dtype=np.dtype(self._dtype)), context) for context in contexts
        ]
        self._single = self._arrays[0] if len(self._arrays) == 1 else None
        self._attach_grads()

    def _attach_grads(self) -> None:
        """Give each data array a tape leaf with a zero buffer, or none when grad_req is null."""
        assert self._arrays is not None
        if self._grad_req == "null":
            self._grads = None
            for arr in self._arrays:
                arr._node = None
            return
        self._grads = []
        for arr in self._arrays:
            leaf = Leaf(np.zeros_like(arr._data), self._grad_req)
            arr._node = leaf
            self._grads.append(_placed(leaf.grad, arr.context))

    def _drop_data(self) -> None:
        self._single = None
        self._arrays = None
        self._grads = None
        self._ctx_list = None

    # ---- data access -------------------------------------------------------------------------
    def _raise_no_data(self) -> NoReturn:
        if self._deferred_init:
            raise DeferredInitializationError(_DEFERRED.format(name=self.name))
        raise RuntimeError(_NOT_INITIALIZED.format(name=self.name))

    def _check_and_get(self, arrays: list[NDArray] | None, ctx: Context | None) -> NDArray:
        if arrays is None:
            self._raise_no_data()
        if len(arrays) == 1 and ctx is None:
            return arrays[0]
        assert self._ctx_list is not None
        wanted = current_context() if ctx is None else ctx
        for context, arr in zip(self._ctx_list, arrays):
            if context == wanted:
                return arr
        raise RuntimeError(
            f"Parameter '{self.name}' was not initialized on context {wanted}. It was only "
            f"initialized on {self._ctx_list}."
        )

    def data(self, ctx: Context | None = None) -> NDArray:
        """The data array on `ctx` (the only one, or the current context's): always the same object.

        Raises `RuntimeError` before `initialize`, `DeferredInitializationError` while waiting
        for the first forward pass, `RuntimeError` for a context it does not live on.
        """
        single = self._single
        if single is not None and ctx is None:
            return single
        return self._check_and_get(self._arrays, ctx)

    def list_data(self) -> list[NDArray]:
        """The data arrays, one per context in context order (errors as `data`)."""
        if self._arrays is None:
            self._raise_no_data()
        return list(self._arrays)  # type: ignore[arg-type]

    def grad(self, ctx: Context | None = None) -> NDArray:
        """The gradient buffer on `ctx`; `RuntimeError` when grad_req is 'null' (else as `data`)."""
        grads = self._grads
        if grads is not None and ctx is None and len(grads) == 1:
            return grads[0]
        if self._arrays is not None and grads is None:
            raise RuntimeError(
                f"Cannot get gradient array for Parameter '{self.name}' because grad_req='null'"
            )
        return self._check_and_get(grads, ctx)

    def list_grad(self) -> list[NDArray]:
        """The gradient buffers, one per context (errors as `grad`)."""
        if self._grads is None:
            self.grad()  # raises the reason there is none
        return list(self._grads)  # type: ignore[arg-type]

    def list_ctx(self) -> list[Context]:
        """The contexts the data lives on (or will, when deferred); `RuntimeError` otherwise."""
        if self._arrays is None:
            if self._deferred_init:
                return list(self._deferred_init[1])
            raise RuntimeError(f"Parameter '{self.name}' has not been initialized")
        return list(self._ctx_list)  # type: ignore[arg-type]

    def zero_grad(self) -> None:
        """Fill the gradient buffers with 0 (nothing to do when uninitialized or null)."""
        for grad in self._grads or ():
            grad._data[...] = 0

    def set_data(self, data: Any) -> None:
        """Copy `data` into every context's array (identity kept); stored for a deferred init.

        The shape must agree with the known dimensions (`AssertionError`); `data` needs a
        `.shape` (an NDArray or a NumPy array).
        """
        self.shape = data.shape
        values = data._data if isinstance(data, NDArray) else np.asarray(data)
        if self._arrays is None:
            if not self._deferred_init:
                raise AssertionError(f"Parameter '{self.name}' has not been initialized")
            self._deferred_init = (*self._deferred_init[:3], values)
            return
        for arr in self._arrays:
            np.copyto(arr._data, values, casting="unsafe")

    def _reduce(self) -> np.ndarray:
        """The value to save: the data, averaged over contexts when there are several."""
        arrays = self.list_data()
        if len(arrays) == 1:
            return arrays[0]._data
        return np.mean([arr._data for arr in arrays], axis=0).astype(arrays[0]._data.dtype)

    def reset_ctx(self, ctx: Context | list[Context] | None) -> None:
        """Move to the contexts `ctx`: copies become their average, gradients restart at 0.

        Raises `ValueError` when the parameter was never initialized.
        """
        contexts = _context_list(ctx)
        if self._arrays is not None:
            self._set_arrays(self._reduce(), contexts)
        elif self._deferred_init:
            init, _, default_init, data = self._deferred_init
            self._deferred_init = (init, contexts, default_init, data)
        else:
            raise ValueError(
                f"Cannot reset context for Parameter '{self.name}' because it has not been "
                "initialized."
            )

    def cast(self, dtype: Any) -> None:
        """Convert data and gradients to `dtype` (arrays keep their identity)."""
        self._dtype = dtype
        if self._arrays is None:
            return
        for arr in self._arrays:
            arr._data = arr._data.astype(dtype)
        grads = [grad._data for grad in self._grads or ()]
        self._attach_grads()
        for grad, old in zip(self._grads or (), grads):
            grad._data[...] = old

    # ---- loading -----------------------------------------------------------------------------
    def _prepare_load(
        self,
        data: np.ndarray,
        ctx: Context | list[Context] | None,
        cast_dtype: bool,
        dtype_source: str,
        shape: tuple[int, ...] | None,
    ) -> _Load:
        """Check that `data` can be loaded (shape, dtype, contexts) without changing anything.

        `shape` is the shape to check against (the current one unless an earlier load of the
        same parameter in this batch fixed it). Raises Gluon's `AssertionError`s.
        """
        if cast_dtype and dtype_source not in ("current", "saved"):
            raise AssertionError(
                f"dtype_source must be 'current' or 'saved', got {dtype_source!r}"
            )
        if shape is not None:
            if len(shape) != data.ndim or any(
                mine not in (0, saved) for mine, saved in zip(shape, data.shape)
            ):
                raise AssertionError(
                    f"Failed loading Parameter '{self.name}' from saved params: shape "
                    f"incompatible expected {shape} vs saved {data.shape}"
                )
        dtype = self._dtype
        if np.dtype(dtype) != data.dtype:
            if not cast_dtype:
                raise AssertionError(
                    f"Failed loading Parameter '{self.name}' from saved params: dtype "
                    f"incompatible expected {dtype} vs saved {data.dtype.type}. Set "
                    "cast_dtype=True to cast the dtype of saved params."
                )
            if dtype_source == "saved":
                dtype = data.dtype.type
        contexts = None if ctx is None else _context_list(ctx)
        if self._arrays is None:
            if self._deferred_init:
                remembered = self._deferred_init[1]
                if contexts is not None and set(contexts) != set(remembered):
                    raise AssertionError(_load_ctx_error(self.name, contexts, remembered))
                contexts = remembered
            elif contexts is None:
                contexts = [cpu()]
        elif contexts is not None and set(contexts) != set(self._ctx_list or ()):
            raise AssertionError(_load_ctx_error(self.name, contexts, self._ctx_list))
        else:
            contexts = None
        return _Load(self, data, tuple(data.shape), dtype, contexts)

    def _apply_load(self, load: _Load) -> None:
        """Write a load checked by `_prepare_load`; the deferred state is cleared."""
        self._shape = load.shape
        if load.dtype is not self._dtype and np.dtype(load.dtype) != np.dtype(self._dtype):
            self.cast(load.dtype)
        if load.contexts is None:
            for arr in self._arrays or ():
                np.copyto(arr._data, load.data, casting="unsafe")
        else:
            self._set_arrays(load.data, load.contexts)
        self._deferred_init = ()


_STORAGE_TYPES = ("default", "row_sparse", "csr")


def _context_list(ctx: Context | list[Context] | None) -> list[Context]:
    if ctx is None:
        return [current_context()]
    if isinstance(ctx, Context):
        return [ctx]
    return list(ctx)


def _load_ctx_error(name: str, wanted: list[Context], current: Any) -> str:
    return (
        f"Failed to load Parameter '{name}' on {wanted} because it was previous initialized "
        f"on {list(current)}."
    )


class _ConstantValue(initializer.Initializer):
    """Writes a Constant's value back; shown by its Gluon name `Constant_<name>_<id>`."""

    def __init__(self, label: str, value: NDArray) -> None:
        super().__init__()
        self._label = label
        self._value = value

    def __repr__(self) -> str:
        return self._label

    def _init_weight(self, name: str, arr: Any) -> None:
        np.copyto(arr._data, self._value._data, casting="unsafe")


class Constant(Parameter):
    """A parameter that holds a fixed value: never differentiated (grad_req is always 'null').

    `value` is turned into an NDArray (float32 unless it is an NDArray of another dtype);
    initializing (again) writes this value back, even after `set_data`.
    """

    def __init__(self, name: str, value: Any) -> None:
        if not isinstance(value, NDArray):
            value = array(value)
        self.value = value
        super().__init__(
            name,
            grad_req="null",
            shape=value.shape,
            dtype=value.dtype,
            init=_ConstantValue(f"Constant_{name}_{id(self)}", value),
        )

    @property
    def grad_req(self) -> str:
        return "null"

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req != "null":
            warnings.warn(
                f'Constant parameter "{self.name}" does not support grad_req other than "null", '
                f'and new value "{req}" is ignored.',
                stacklevel=2,
            )
        self._grad_req = "null"


def _indent(text: str, spaces: int) -> str:
    """Indent every line of `text` but the first by `spaces` spaces (blank lines too)."""
    return text.replace("\n", "\n" + " " * spaces)


class ParameterDict:
    """An ordered mapping from full names to Parameters, with a name prefix.

    `get` and `get_constant` find a parameter in this dict, then in `shared` (whose object
    they then hold too), else create it: that is how `params=` ties blocks together.
    Like Gluon's it has no `len()`.
    """

    def __init__(self, prefix: str = "", shared: ParameterDict | None = None) -> None:
        self._prefix = prefix
        # An OrderedDict, as Gluon's: `keys()` prints as `odict_keys([...])`.
        self._params: OrderedDict[str, Parameter] = OrderedDict()
        self._shared = shared

    def __repr__(self) -> str:
        head = f"{self._prefix} (" if self._prefix else "("
        body = "\n".join(_indent(f"  {param}", 2) for param in self._params.values())
        return f"{head}\n{body}\n)"

    def __getitem__(self, key: str) -> Parameter:
        return self._params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def keys(self) -> Any:
        return self._params.keys()

    def values(self) -> Any:
        return self._params.values()

    def items(self) -> Any:
        return self._params.items()

    @property
    def prefix(self) -> str:
        return self._prefix

    def _get_impl(self, name: str) -> Parameter | None:
        if name in self._params:
            return self._params[name]
        if self._shared is not None and name in self._shared._params:
            self._params[name] = self._shared._params[name]
            return self._params[name]
        return None

    def get(self, name: str, **kwargs: Any) -> Parameter:
        """The parameter `prefix + name`, found here or in the shared dict, else created.

        Keyword arguments are Parameter attributes; for a found parameter each must agree
        with the stored one (shapes merge over unknown 0 dims; None attributes are set),
        else `AssertionError`.
        """
        full_name = self._prefix + name
        param = self._get_impl(full_name)
        if param is None:
            param = Parameter(full_name, **kwargs)
            self._params[full_name] = param
            return param
        for key, wanted in kwargs.items():
            stored = getattr(param, key, None)
            if stored is None:
                setattr(param, key, wanted)
                continue
            if key == "shape" and wanted is not None:
                merged = _merged_shape(wanted, stored)
                if merged is not None:
                    param._shape = merged
                    continue
            elif key == "dtype" and np.dtype(wanted) == np.dtype(stored):
                continue
            if wanted is not None and wanted != stored:
                raise AssertionError(
                    f"Cannot retrieve Parameter '{full_name}' because desired attribute does "
                    f"not match with stored for attribute '{key}': desired '{wanted}' vs "
                    f"stored '{stored}'."
                )
        return param

    def get_constant(self, name: str, value: Any = None) -> Constant:
        """The constant `prefix + name`, found or created with `value`.

        Raises `KeyError` when absent and no value is given, `AssertionError` when a found
        parameter is not a Constant or holds another value.
        """
        full_name = self._prefix + name
        param = self._get_impl(full_name)
        if param is None:
            if value is None:
                raise KeyError(
                    f"No constant named '{full_name}'. Please specify value if you want to "
                    "create a new constant."
                )
            param = Constant(full_name, value)
            self._params[full_name] = param
        elif value is not None:
            if not isinstance(param, Constant):
                raise AssertionError(
                    f"Parameter '{full_name}' already exists but it is not a constant."
                )
            if isinstance(value, NDArray):
                value = value.asnumpy()
            if param.shape != value.shape or not (param.value.asnumpy() == value).all():
                raise AssertionError(
                    f"Constant '{full_name}' already exists but it's value doesn't match new value"
                )
        return param  # type: ignore[return-value]

    def update(self, other: Mapping[str, Parameter] | ParameterDict) -> None:
        """Add `other`'s entries; a name already here must hold the same object."""
        for name, param in other.items():
            existing = self._params.get(name)
            if existing is None:
                self._params[name] = param
            elif existing is not param:
                raise AssertionError(
                    "Cannot update self with other because they have different Parameters "
                    f"with the same name '{name}'"
                )

    def initialize(
        self,
        init: Any = None,
        ctx: Context | list[Context] | None = None,
        verbose: bool = False,
        force_reinit: bool = False,
    ) -> None:
        """Initialize every parameter; `init` (default Uniform(0.07)) is only the fallback
        for parameters without their own `init`. See `Parameter.initialize`."""
        if init is None:
            init = initializer.Uniform()
        if verbose:
            init.set_verbosity(verbose=verbose)
        for param in self._params.values():
            param.initialize(None, ctx, init, force_reinit=force_reinit)

    def zero_grad(self) -> None:
        """Zero every gradient buffer (parameters without one are skipped)."""
        for param in self._params.values():
            param.zero_grad()

    def reset_ctx(self, ctx: Context | list[Context] | None) -> None:
        for param in self._params.values():
            param.reset_ctx(ctx)

    def list_ctx(self) -> list[Context]:
        """Every context some parameter lives on."""
        contexts: list[Context] = []
        for param in self._params.values():
            contexts.extend(c for c in param.list_ctx() if c not in contexts)
        return contexts

    def setattr(self, name: str, value: Any) -> None:
        """Set attribute `name` (`grad_req`, `lr_mult`, ...) on every parameter."""
        for param in self._params.values():
            setattr(param, name, value)

    def select(self, pattern: str | None) -> ParameterDict:
        """The parameters whose full name `re.match`es `pattern` (all when empty), same prefix."""
        selected = ParameterDict(self._prefix)
        matches: Callable[[str], Any] = re.compile(pattern).match if pattern else bool
        selected.update({k: v for k, v in self._params.items() if matches(k)})
        return selected

    # ---- files -------------------------------------------------------------------------------
    def save(self, filename: str, strip_prefix: str = "") -> None:
        """Write the parameters to a safetensors file, keyed by name minus `strip_prefix`.

        A tied parameter is stored once. Raises `ValueError` for a name without the prefix,
        the parameter's errors for one not initialized.
        """
        from paramstore.gluon import saving

        saving.save_named(self, filename, strip_prefix)

    def load(
        self,
        filename: str,
        ctx: Context | list[Context] | None = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        restore_prefix: str = "",
        cast_dtype: bool = False,
        dtype_source: str = "current",
    ) -> None:
        """Load a file written by `save`: keys get `restore_prefix` in front and are matched
        by name. Missing or extra names, shape or dtype mismatches raise `AssertionError` and
        change nothing."""
        from paramstore.gluon import saving

        saving.load_named_file(
            self, filename, ctx, allow_missing, ignore_extra, restore_prefix, cast_dtype,
            dtype_source,
        )

    def load_dict(
        self,
        param_dict: Mapping[str, Any],
        ctx: Context | list[Context] | None = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        restore_prefix: str = "",
        filename: str | None = None,
        cast_dtype: bool = False,
        dtype_source: str = "current",
    ) -> None:
        """`load` from an in-memory mapping of names to arrays (`arg:`/`aux:` are dropped)."""
        from paramstore.gluon import saving

        saving.load_named(
            self, param_dict, ctx, allow_missing, ignore_extra, restore_prefix, filename,
            cast_dtype, dtype_source,
        )


def _merged_shape(wanted: Any, stored: tuple[int, ...]) -> tuple[int, ...] | None:
    """`wanted` and `stored` merged over unknown (0) dims, or None when they disagree."""
    wanted = (wanted,) if isinstance(wanted, int) else tuple(wanted)
    if len(wanted) != len(stored):
        return None
    merged = []
    for mine, theirs in zip(wanted, stored):
        if mine != theirs and mine > 0 and theirs > 0:
            return None
        merged.append(theirs if mine in (0, -1) else mine)
    return tuple(merged)
