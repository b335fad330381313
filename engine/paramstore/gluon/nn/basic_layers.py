"""Containers and basic layers: Sequential, HybridSequential, Dense, Activation, Dropout,
Embedding, Flatten. Reprs, parameter names and defaults are Gluon's."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from paramstore import nd
from paramstore.gluon.block import Block, HybridBlock
from paramstore.gluon.parameter import _indent

__all__ = [
    "Activation", "Dense", "Dropout", "Embedding", "Flatten", "HybridSequential", "LeakyReLU",
    "Sequential",
]


def _container_repr(block: Block) -> str:
    children = "\n".join(
        f"  ({key}): {_indent(repr(child), 2)}" for key, child in block._children.items()
    )
    return f"{type(block).__name__}(\n{children}\n)"


class _Stack:
    """What Sequential and HybridSequential share: add, run in order, index, slice, len."""

    _children: dict[str, Block]

    def add(self, *blocks: Block) -> None:
        """Append blocks; each is keyed by its position ('0', '1', ...)."""
        for block in blocks:
            self.register_child(block)  # type: ignore[attr-defined]

    def forward(self, x: Any, *args: Any) -> Any:
        for block in self._children.values():
            x = block(x, *args)
            args = ()
            if isinstance(x, (tuple, list)):
                x, args = x[0], tuple(x[1:])
        return (x, *args) if args else x

    def __repr__(self) -> str:
        return _container_repr(self)  # type: ignore[arg-type]

    def __getitem__(self, key: int | slice) -> Any:
        layers = list(self._children.values())[key]
        if not isinstance(layers, list):
            return layers
        # A slice is a new container of the same class and prefix over the same blocks.
        stack = type(self)(prefix=self.prefix)  # type: ignore[attr-defined,call-arg]
        with stack.name_scope():
            stack.add(*layers)
        return stack

    def __len__(self) -> int:
        return len(self._children)


class Sequential(_Stack, Block):
    """Runs its children one after the other, the output of each feeding the next."""

    def __init__(self, prefix: str | None = None, params: Any = None) -> None:
        super().__init__(prefix=prefix, params=params)

    def hybridize(self, active: bool = True, **kwargs: Any) -> None:
        """Hybridize the children; warns, as Gluon does, when all are HybridBlocks."""
        if self._children and all(
                isinstance(child, HybridBlock) for child in self._children.values()):
            warnings.warn(
                f"All children of this Sequential layer '{self.prefix}' are HybridBlocks. "
                "Consider using HybridSequential for the best performance.", stacklevel=2)
        super().hybridize(active, **kwargs)


class HybridSequential(_Stack, HybridBlock):
    """Sequential for HybridBlocks (`hybridize()` is accepted and changes nothing)."""

    def __init__(self, prefix: str | None = None, params: Any = None) -> None:
        super().__init__(prefix=prefix, params=params)


class Activation(HybridBlock):
    """Applies the activation `activation` (relu, sigmoid, tanh, softrelu) elementwise.

    Its automatic name is the activation type (`relu0`), not the class name.
    """

    def __init__(self, activation: str, **kwargs: Any) -> None:
        self._act_type = activation
        super().__init__(**kwargs)

    def _alias(self) -> str:
        return self._act_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._act_type})"

    def forward(self, x: Any) -> Any:
        return nd.Activation(x, act_type=self._act_type)


class LeakyReLU(HybridBlock):
    """`x` where positive, `alpha * x` elsewhere."""

    def __init__(self, alpha: float, **kwargs: Any) -> None:
        if alpha < 0:
            raise ValueError(f"Slope coefficient for LeakyReLU must be no less than 0, got {alpha}")
        super().__init__(**kwargs)
        self._alpha = alpha

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._alpha})"

    def forward(self, x: Any) -> Any:
        return nd.maximum(x, 0) + self._alpha * nd.minimum(x, 0)


class Dense(HybridBlock):
    """`activation(x W^T + b)` with `W` of shape (units, in_units).

    `in_units=0` leaves the input width to the first forward pass (deferred initialization).
    With `flatten`, inputs of shape (N, a, b, ...) are folded to (N, a*b*...); otherwise the
    last axis is the input width. Parameters: `weight` (init `weight_initializer`, default
    the block-level initializer) and `bias` (init `bias_initializer`, default 'zeros').
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        flatten: bool = True,
        dtype: Any = "float32",
        weight_initializer: Any = None,
        bias_initializer: Any = "zeros",
        in_units: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._flatten = flatten
        self._units = units
        self._in_units = in_units
        with self.name_scope():
            self.weight = self.params.get(
                "weight", shape=(units, in_units), init=weight_initializer, dtype=dtype,
                allow_deferred_init=True,
            )
            if use_bias:
                self.bias = self.params.get(
                    "bias", shape=(units,), init=bias_initializer, dtype=dtype,
                    allow_deferred_init=True,
                )
            else:
                self.bias = None
            if activation is not None:
                self.act = Activation(activation, prefix=activation + "_")
            else:
                self.act = None

    def __repr__(self) -> str:
        units, in_units = self.weight.shape
        act = self.act if self.act is not None else "linear"
        return f"{type(self).__name__}({in_units or None} -> {units}, {act})"

    def forward(self, x: Any) -> Any:
        # The hot path: initialized, on one context, an input on the default context, no hook
        # on the activation to honour.
        weight = self.weight._single
        bias = self.bias
        act = self.act
        if weight is None or (bias is not None and bias._single is None) or (
            act is not None and (act._forward_hooks or act._forward_pre_hooks)
        ) or getattr(x, "_ctx", None) is not None:
            return super().forward(x)
        return nd.dense(
            x, weight, None if bias is None else bias._single,
            None if act is None else act._act_type, self._flatten,
        )

    def infer_shape(self, x: Any, *args: Any) -> None:
        in_units = int(np.prod(x.shape[1:])) if self._flatten else x.shape[-1]
        self.weight.shape = (self._units, in_units)

    def hybrid_forward(self, F: Any, x: Any, weight: Any, bias: Any = None) -> Any:
        out = F.FullyConnected(
            x, weight, bias, num_hidden=self._units, no_bias=bias is None, flatten=self._flatten
        )
        return self.act(out) if self.act is not None else out


class Dropout(HybridBlock):
    """Zeroes each element with probability `rate` in training mode, scaling the rest by
    1/(1-rate); the identity when predicting. `axes` share one mask along those axes."""

    def __init__(self, rate: float, axes: tuple[int, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rate = rate
        self._axes = axes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p = {self._rate}, axes={self._axes})"

    def forward(self, x: Any) -> Any:
        return nd.Dropout(x, p=self._rate, axes=self._axes)


class Embedding(HybridBlock):
    """Looks up rows of a (input_dim, output_dim) `weight` by the integer indices in `x`."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        dtype: Any = "float32",
        weight_initializer: Any = None,
        sparse_grad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._input_dim = input_dim
        self._output_dim = output_dim
        self._dtype = dtype
        self.weight = self.params.get(
            "weight", shape=(input_dim, output_dim), init=weight_initializer, dtype=dtype,
            allow_deferred_init=True,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._input_dim} -> {self._output_dim}, "
            f"{np.dtype(self._dtype).name})"
        )

    def hybrid_forward(self, F: Any, x: Any, weight: Any) -> Any:
        return F.Embedding(x, weight, input_dim=self._input_dim, output_dim=self._output_dim)


class Flatten(HybridBlock):
    """Folds every axis after the first: (N, a, b, ...) -> (N, a*b*...)."""

    def __repr__(self) -> str:
        return type(self).__name__

    def forward(self, x: Any) -> Any:
        return nd.flatten(x)
