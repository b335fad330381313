"""`Lambda` and `HybridLambda`: a function, or the name of an `nd` operator, as a block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paramstore import nd
from paramstore.gluon.block import Block, HybridBlock

__all__ = ["HybridLambda", "Lambda"]


def _operator(function: str) -> Callable[..., Any]:
    if not hasattr(nd, function):
        raise AssertionError(f"Function name {function} is not found in ndarray.")
    return getattr(nd, function)


def _unrecognized(function: Any) -> ValueError:
    return ValueError(f"Unrecognized function in lambda: {function} of type {type(function)}")


class Lambda(Block):
    """Runs `function(*inputs)`: a callable, or the name of an `nd` operator ('tanh')."""

    def __init__(self, function: str | Callable[..., Any], prefix: str | None = None) -> None:
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            self._func_impl = _operator(function)
        elif callable(function):
            self._func_impl = function
        else:
            raise _unrecognized(function)

    def forward(self, *args: Any) -> Any:
        return self._func_impl(*args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._func_impl.__name__})"


class HybridLambda(HybridBlock):
    """Runs `function(F, x, *inputs)`, or the `nd` operator named `function` on the inputs."""

    def __init__(self, function: str | Callable[..., Any], prefix: str | None = None) -> None:
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            operator = _operator(function)
            self._func: Callable[..., Any] = lambda F, *args: operator(*args)
            self._func_name = function
        elif callable(function):
            self._func = function
            self._func_name = function.__name__
        else:
            raise _unrecognized(function)

    def hybrid_forward(self, F: Any, x: Any, *args: Any) -> Any:
        return self._func(F, x, *args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._func_name})"
