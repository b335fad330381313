"""`Block` and `HybridBlock`: layers and models that own parameters and child blocks.

Naming follows Gluon exactly (see `_BlockScope.create`): outside any `name_scope()` a block
without `prefix` is numbered by the current `paramstore.name.NameManager` (`dense0_`,
`dense1_`, ...); inside `with parent.name_scope():` it is numbered by a counter owned by that
parent and its prefix starts with the parent's. Parameters are named by the block's
`ParameterDict` prefix, which `params=` can take from another block to share its Parameters.

`HybridBlock` runs imperatively; `hybridize()` is accepted and changes nothing.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from paramstore import name as naming
from paramstore import nd
from paramstore.context import Context
from paramstore.gluon.parameter import (
    DeferredInitializationError,
    Parameter,
    ParameterDict,
    _indent,
)

__all__ = ["Block", "HybridBlock"]

_UNREGISTERED_CONTAINER = (
    '"{name}" is an unregistered container with Blocks. Note that Blocks inside the list, '
    "tuple or dict will not be registered automatically. Make sure to register them using "
    "register_child() or switching to nn.Sequential/nn.HybridSequential instead. "
)


class _BlockScope:
    """The naming scope of one block: its own per-hint counters for children made inside it."""

    _current = threading.local()

    def __init__(self, block: Block) -> None:
        self._block = block
        self._counter: dict[str, int] = {}
        self._previous: list[_BlockScope | None] = []

    @staticmethod
    def create(
        prefix: str | None, params: ParameterDict | None, hint: str
    ) -> tuple[str, ParameterDict]:
        """The prefix and ParameterDict of a new block, from the scope active now."""
        current: _BlockScope | None = getattr(_BlockScope._current, "value", None)
        if current is None:
            if prefix is None:
                prefix = naming.current().get(None, hint) + "_"
            if params is None:
                return prefix, ParameterDict(prefix)
            return prefix, ParameterDict(params.prefix, params)
        if prefix is None:
            count = current._counter.get(hint, 0)
            prefix = f"{hint}{count}_"
            current._counter[hint] = count + 1
        if params is None:
            parent = current._block.params
            params = ParameterDict(parent.prefix + prefix, parent._shared)
        else:
            params = ParameterDict(params.prefix, params)
        return current._block.prefix + prefix, params

    def __enter__(self) -> _BlockScope:
        if self._block._empty_prefix:
            return self
        self._previous.append(getattr(_BlockScope._current, "value", None))
        _BlockScope._current.value = self
        return self

    def __exit__(self, *exc: object) -> None:
        if self._block._empty_prefix:
            return
        _BlockScope._current.value = self._previous.pop()


class HookHandle:
    """Returned by `register_forward_hook`: `detach()` removes the hook."""

    def __init__(self, hooks: dict[int, Callable], key: int) -> None:
        self._hooks = hooks
        self._key = key

    def detach(self) -> None:
        self._hooks.pop(self._key, None)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


class Block:
    """Base class of layers and models: override `forward`; call the block to run it.

    Blocks assigned to attributes become children (keyed by the attribute name) and
    Parameters assigned to attributes are the block's registered parameters (the keys of
    `save_parameters`). `prefix` fixes the name prefix; `params` shares another
    ParameterDict's Parameters.
    """

    def __init__(self, prefix: str | None = None, params: ParameterDict | None = None) -> None:
        self._empty_prefix = prefix == ""
        self._prefix, self._params = _BlockScope.create(prefix, params, self._alias())
        self._name = self._prefix[:-1] if self._prefix.endswith("_") else self._prefix
        self._scope = _BlockScope(self)
        self._children: dict[str, Block] = {}
        self._reg_params: dict[str, Parameter] = {}
        self._forward_hooks: dict[int, Callable] = {}
        self._forward_pre_hooks: dict[int, Callable] = {}

    def _alias(self) -> str:
        return type(self).__name__.lower()

    def __repr__(self) -> str:
        children = "\n".join(
            f"  ({key}): {_indent(repr(value), 2)}"
            for key, value in self.__dict__.items()
            if isinstance(value, Block)
        )
        return f"{type(self).__name__}(\n{children}\n)"

    def __setattr__(self, name: str, value: Any) -> None:
        """Register Blocks as children and Parameters as this block's parameters."""
        existing = self.__dict__.get(name)
        if isinstance(existing, (Parameter, Block)) and not isinstance(value, type(existing)):
            raise TypeError(
                f"Changing attribute type for {name} from {type(existing)} to {type(value)}"
                "is not allowed."
            )
        if isinstance(value, Block):
            self.register_child(value, name)
        elif isinstance(value, Parameter):
            if name in self._reg_params:
                raise AssertionError(
                    "Overriding Parameter attribute %s is not allowed. If you want to share "
                    "parameters between blocks, please set 'params' at Block construction "
                    "instead."
                )
            self._reg_params[name] = value
        object.__setattr__(self, name, value)

    # ---- names -------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def name(self) -> str:
        return self._name

    @property
    def params(self) -> ParameterDict:
        """This block's own ParameterDict (not its children's: see `collect_params`)."""
        return self._params

    def name_scope(self) -> _BlockScope:
        """`with block.name_scope():` children created inside get this block's prefix."""
        return self._scope

    # ---- children and parameters -------------------------------------------------------------
    def register_child(self, block: Block, name: str | None = None) -> None:
        """Add `block` as a child under `name` (default: the number of children so far)."""
        if name is None:
            name = str(len(self._children))
        self._children[name] = block

    def collect_params(self, select: str | None = None) -> ParameterDict:
        """This block's and its descendants' Parameters, each once, first occurrence first.

        `select` is a regular expression that must match at the start of the full name
        (`re.match`); None or '' selects everything. Raises `AssertionError` when two
        different Parameters have the same name.
        """
        self._warn_unregistered_containers()
        collected = ParameterDict(self._params.prefix)
        if not select:
            collected.update(self._params)
        else:
            matches = re.compile(select).match
            collected.update({k: v for k, v in self._params.items() if matches(k)})
        for child in self._children.values():
            collected.update(child.collect_params(select=select))
        return collected

    def _collect_params_with_prefix(self, prefix: str = "") -> dict[str, Parameter]:
        """Registered Parameters by structural path (`0.weight`, `hidden.bias`, ...)."""
        if prefix:
            prefix += "."
        found = {prefix + key: param for key, param in self._reg_params.items()}
        for key, child in self._children.items():
            found.update(child._collect_params_with_prefix(prefix + key))
        return found

    def _warn_unregistered_containers(self) -> None:
        registered = {id(child) for child in self._children.values()}

        def holds_unregistered(value: Any) -> bool:
            if isinstance(value, (list, tuple)):
                return any(holds_unregistered(item) for item in value)
            if isinstance(value, dict):
                return any(holds_unregistered(item) for item in value.values())
            return isinstance(value, Block) and id(value) not in registered

        for key, value in self.__dict__.items():
            if key.startswith("__") or key == "_children":
                continue
            if isinstance(value, (list, tuple, dict)) and holds_unregistered(value):
                warnings.warn(
                    _UNREGISTERED_CONTAINER.format(name=f"{type(self).__name__}.{key}"),
                    stacklevel=3,
                )

    def initialize(
        self,
        init: Any = None,
        ctx: Context | list[Context] | None = None,
        verbose: bool = False,
        force_reinit: bool = False,
    ) -> None:
        """Initialize every collected Parameter; `init` (default Uniform(0.07)) is the
        fallback for those without their own initializer. See `Parameter.initialize`."""
        self.collect_params().initialize(init, ctx, verbose, force_reinit)

    def apply(self, fn: Callable[[Block], Any]) -> Block:
        """Call `fn` on every descendant, children before parents; returns self."""
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

    def cast(self, dtype: Any) -> None:
        """Convert every parameter of this block and its descendants to `dtype`."""
        for child in self._children.values():
            child.cast(dtype)
        for param in self._params.values():
            param.cast(dtype)

    def hybridize(self, active: bool = True, **kwargs: Any) -> None:
        """Accepted for compatibility: blocks always run imperatively."""
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    # ---- files -------------------------------------------------------------------------------
    def save_parameters(self, filename: str, deduplicate: bool = False) -> None:
        """Write the registered parameters to a safetensors file under structural keys.

        A tied parameter is stored once and its other paths recorded as aliases; with
        `deduplicate` it is written under its last path only. Raises the parameters' errors
        when one is not initialized.
        """
        from paramstore.gluon import saving

        saving.save_structural(self, filename, deduplicate)

    def load_parameters(
        self,
        filename: str,
        ctx: Context | list[Context] | None = None,
        allow_missing: bool = False,
        ignore_extra: bool = False,
        cast_dtype: bool = False,
        dtype_source: str = "current",
    ) -> None:
        """Load a file written by `save_parameters` (or, when no key has a '.', by
        `ParameterDict.save`). Missing or extra keys, shape or dtype mismatches raise
        Gluon's errors and nothing is changed."""
        from paramstore.gluon import saving

        saving.load_structural(
            self, filename, ctx, allow_missing, ignore_extra, cast_dtype, dtype_source
        )

    def save(self, prefix: str) -> None:
        """Write `<prefix>-model.json` (the blocks' names and children) and
        `<prefix>-model.params` (as `save_parameters`), for `load` on a model built alike."""
        from paramstore.gluon import saving

        saving.save_model(self, prefix)

    def load(self, prefix: str) -> None:
        """Load what `save(prefix)` wrote: blocks and parameter keys take their saved names,
        then the parameters load. Raises `ValueError` for a model built differently."""
        from paramstore.gluon import saving

        saving.load_model(self, prefix)

    def save_params(self, filename: str) -> None:
        """[Deprecated] Write the parameters by name without the block's prefix."""
        warnings.warn(
            "save_params is deprecated. Please use save_parameters. Note that if you want load "
            "from SymbolBlock later, please use export instead. For details, see "
            "https://mxnet.apache.org/tutorials/gluon/save_load_params.html", stacklevel=2)
        try:
            self.collect_params().save(filename, strip_prefix=self.prefix)
        except ValueError as error:
            raise ValueError(f"{error}\nsave_params is deprecated. Using save_parameters may "
                             "resolve this error.") from None

    def load_params(
        self, filename: str, ctx: Context | list[Context] | None = None,
        allow_missing: bool = False, ignore_extra: bool = False,
    ) -> None:
        """[Deprecated] `load_parameters` under its old name."""
        warnings.warn("load_params is deprecated. Please use load_parameters.", stacklevel=2)
        self.load_parameters(filename, ctx, allow_missing, ignore_extra)

    # ---- running -----------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook: Callable) -> HookHandle:
        """Call `hook(block, inputs)` before every forward."""
        self._forward_pre_hooks[id(hook)] = hook
        return HookHandle(self._forward_pre_hooks, id(hook))

    def register_forward_hook(self, hook: Callable) -> HookHandle:
        """Call `hook(block, inputs, output)` after every forward."""
        self._forward_hooks[id(hook)] = hook
        return HookHandle(self._forward_hooks, id(hook))

    def __call__(self, *args: Any) -> Any:
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                hook(self, args)
        out = self.forward(*args)
        # Outputs are on the first input's context, so the next block reads the same copies.
        ctx = getattr(args[0], "_ctx", None) if args else None
        if ctx is not None:
            for array in out if isinstance(out, (list, tuple)) else (out,):
                if isinstance(array, nd.NDArray):
                    array._ctx = ctx
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                hook(self, args, out)
        return out

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must override forward")

    def children(self) -> Iterator[Block]:
        return iter(self._children.values())


class HybridBlock(Block):
    """A block written as `hybrid_forward(F, x, *args, **params)` with `F = paramstore.nd`.

    Its registered Parameters arrive as keyword arguments. On the first call, Parameters
    still waiting for a shape get it from `infer_shape(x, *args)` (layers override it), then
    finish their deferred initialization.
    """

    def forward(self, x: Any, *args: Any) -> Any:
        # An input placed on a context (not the default) reads the parameters' copies there.
        ctx = getattr(x, "_ctx", None)
        try:
            params = {key: param.data(ctx) for key, param in self._reg_params.items()}
        except DeferredInitializationError:
            self.infer_shape(x, *args)
            for param in self._params.values():
                param._finish_deferred_init()
            params = {key: param.data(ctx) for key, param in self._reg_params.items()}
        return self.hybrid_forward(nd, x, *args, **params)

    def hybrid_forward(self, F: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must override hybrid_forward")

    def infer_shape(self, *args: Any) -> None:
        """Fix the unknown parameter dimensions from the inputs.

        This base version cannot, and raises `ValueError` listing the parameters whose shape
        is still unknown.
        """
        unknown = "\n\t".join(
            f"{param.name}: {param.shape}"
            for param in self._params.values()
            if param.shape is None or 0 in param.shape
        )
        raise ValueError(
            "Deferred initialization failed because shape cannot be inferred. Cannot decide "
            "shape for the following arguments (0s in shape means unknown dimensions). "
            f"Consider providing them as input:\n\t{unknown}"
        )
