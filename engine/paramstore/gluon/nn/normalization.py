"""BatchNorm, LayerNorm, InstanceNorm and GroupNorm, built from `nd` operators (their gradients
come from the tape)."""

from __future__ import annotations

from typing import Any

import numpy as np

from paramstore import _tape, nd
from paramstore.gluon.block import HybridBlock
from paramstore.nd.ndarray import NDArray

__all__ = ["BatchNorm", "GroupNorm", "InstanceNorm", "LayerNorm"]


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def _along(axis: int, ndim: int) -> tuple[int, ...]:
    """The shape that broadcasts a per-channel vector along `axis` of an `ndim`-d input."""
    shape = [1] * ndim
    shape[axis] = -1
    return tuple(shape)


def _normalize(x: NDArray, mean: NDArray, var: NDArray, eps: float) -> NDArray:
    return (x - mean) / nd.sqrt(var + eps)


class BatchNorm(HybridBlock):
    """Normalizes each channel (axis `axis`) over the batch, then scales and shifts it.

    In training mode (`autograd.record()`) the batch statistics are used, and the running
    statistics move towards them (`running = momentum * running + (1 - momentum) * batch`,
    biased variance) when the backward pass runs, as in Gluon; otherwise the running
    statistics are used. `in_channels=0` leaves the channel count to the first forward pass.
    """

    def __init__(
        self,
        axis: int = 1,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        center: bool = True,
        scale: bool = True,
        use_global_stats: bool = False,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        running_mean_initializer: Any = "zeros",
        running_variance_initializer: Any = "ones",
        in_channels: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._kwargs = {
            "axis": axis, "eps": epsilon, "momentum": momentum, "fix_gamma": not scale,
            "use_global_stats": use_global_stats,
        }
        self._axis = axis
        self._momentum = momentum
        self._epsilon = epsilon
        self._use_global_stats = use_global_stats
        shape = (in_channels,)
        self.gamma = self.params.get(
            "gamma", grad_req="write" if scale else "null", shape=shape,
            init=gamma_initializer, allow_deferred_init=True, differentiable=scale,
        )
        self.beta = self.params.get(
            "beta", grad_req="write" if center else "null", shape=shape,
            init=beta_initializer, allow_deferred_init=True, differentiable=center,
        )
        self.running_mean = self.params.get(
            "running_mean", grad_req="null", shape=shape, init=running_mean_initializer,
            allow_deferred_init=True, differentiable=False,
        )
        self.running_var = self.params.get(
            "running_var", grad_req="null", shape=shape, init=running_variance_initializer,
            allow_deferred_init=True, differentiable=False,
        )

    def __repr__(self) -> str:
        channels = self.gamma.shape[0]
        return (
            f"{type(self).__name__}({_kwargs_text(self._kwargs)}, "
            f"in_channels={channels if channels else None})"
        )

    def infer_shape(self, x: Any, *args: Any) -> None:
        channels = x.shape[self._axis]
        for param in (self.gamma, self.beta, self.running_mean, self.running_var):
            param.shape = (channels,)

    def hybrid_forward(
        self, F: Any, x: NDArray, gamma: NDArray, beta: NDArray, running_mean: NDArray,
        running_var: NDArray,
    ) -> NDArray:
        along = _along(self._axis, x.ndim)
        if self._use_global_stats or not _tape.STATE.training:
            out = _normalize(x, running_mean.reshape(along), running_var.reshape(along),
                             self._epsilon)
            return out * gamma.reshape(along) + beta.reshape(along)
        axes = tuple(i for i in range(x.ndim) if i != self._axis % x.ndim)
        mean = nd.mean(x, axis=axes, keepdims=True)
        var = nd.mean(nd.square(x - mean), axis=axes, keepdims=True)
        out = _normalize(x, mean, var, self._epsilon) * gamma.reshape(along) + beta.reshape(along)
        return self._update_stats_on_backward(out, mean._data.reshape(-1), var._data.reshape(-1))

    def _update_stats_on_backward(
        self, out: NDArray, batch_mean: np.ndarray, batch_var: np.ndarray
    ) -> NDArray:
        """`out` again, on the tape behind an identity op whose backward moves the running
        statistics: Gluon updates them during backward, not during the forward pass."""
        momentum = self._momentum
        running_mean, running_var = self.running_mean.data(), self.running_var.data()

        def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple[np.ndarray]:
            running_mean._data[...] = momentum * running_mean._data + (1 - momentum) * batch_mean
            running_var._data[...] = momentum * running_var._data + (1 - momentum) * batch_var
            return (g,)

        return _tape.record1("BatchNorm", NDArray._wrap(out._data), out, backward)


def _scale_and_shift(
    block: HybridBlock, shape: tuple[int, ...], center: bool, scale: bool,
    beta_initializer: Any, gamma_initializer: Any,
) -> tuple[Any, Any]:
    """The `gamma` and `beta` parameters of a normalization, learnt when `scale` / `center`."""
    gamma = block.params.get(
        "gamma", grad_req="write" if scale else "null", shape=shape, init=gamma_initializer,
        allow_deferred_init=True,
    )
    beta = block.params.get(
        "beta", grad_req="write" if center else "null", shape=shape, init=beta_initializer,
        allow_deferred_init=True,
    )
    return gamma, beta


class _ChannelNorm(HybridBlock):
    """LayerNorm's and InstanceNorm's shared half: a `gamma` and a `beta` per channel of axis
    `axis` (learnt when `scale` / `center`), inferred at the first forward pass."""

    def __init__(
        self, axis: int, epsilon: float, center: bool, scale: bool, beta_initializer: Any,
        gamma_initializer: Any, in_channels: int, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._kwargs = {"eps": epsilon, "axis": axis, "center": center, "scale": scale}
        self._axis = axis
        self._epsilon = epsilon
        self.gamma, self.beta = _scale_and_shift(
            self, (in_channels,), center, scale, beta_initializer, gamma_initializer)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({_kwargs_text(self._kwargs)}, "
            f"in_channels={self.gamma.shape[0]})"
        )

    def infer_shape(self, x: Any, *args: Any) -> None:
        channels = x.shape[self._axis]
        self.gamma.shape = (channels,)
        self.beta.shape = (channels,)


class LayerNorm(_ChannelNorm):
    """Normalizes each sample over axis `axis`, then scales (`gamma`) and shifts (`beta`)."""

    def __init__(
        self,
        axis: int = -1,
        epsilon: float = 1e-5,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        in_channels: int = 0,
        prefix: str | None = None,
        params: Any = None,
    ) -> None:
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         in_channels, prefix=prefix, params=params)

    def hybrid_forward(self, F: Any, x: NDArray, gamma: NDArray, beta: NDArray) -> NDArray:
        along = _along(self._axis, x.ndim)
        mean = nd.mean(x, axis=self._axis, keepdims=True)
        var = nd.mean(nd.square(x - mean), axis=self._axis, keepdims=True)
        out = _normalize(x, mean, var, self._epsilon)
        return out * gamma.reshape(along) + beta.reshape(along)


class InstanceNorm(_ChannelNorm):
    """Normalizes each sample's each channel (axis `axis`) over the other axes, then scales
    (`gamma`, only learnt when `scale`) and shifts (`beta`, learnt when `center`)."""

    def __init__(
        self,
        axis: int = 1,
        epsilon: float = 1e-5,
        center: bool = True,
        scale: bool = False,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        in_channels: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         in_channels, **kwargs)

    def hybrid_forward(self, F: Any, x: NDArray, gamma: NDArray, beta: NDArray) -> NDArray:
        if self._axis in (1, 1 - x.ndim):
            return F.InstanceNorm(x, gamma, beta, eps=self._epsilon)
        swap = list(range(x.ndim))
        swap[1], swap[self._axis] = swap[self._axis], swap[1]
        out = F.InstanceNorm(F.transpose(x, swap), gamma, beta, eps=self._epsilon)
        return F.transpose(out, swap)


class GroupNorm(HybridBlock):
    """Splits the channels (axis 1) into `num_groups` groups, normalizes each sample's each
    group, then scales (`gamma`) and shifts (`beta`), one value per group."""

    def __init__(
        self,
        num_groups: int = 1,
        epsilon: float = 1e-5,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        prefix: str | None = None,
        params: Any = None,
    ) -> None:
        super().__init__(prefix=prefix, params=params)
        self._kwargs = {"eps": epsilon, "num_groups": num_groups, "center": center,
                        "scale": scale}
        self._num_groups = num_groups
        self._epsilon = epsilon
        self.gamma, self.beta = _scale_and_shift(
            self, (num_groups,), center, scale, beta_initializer, gamma_initializer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_kwargs_text(self._kwargs)})"

    def hybrid_forward(self, F: Any, x: NDArray, gamma: NDArray, beta: NDArray) -> NDArray:
        return F.GroupNorm(x, gamma, beta, num_groups=self._num_groups, eps=self._epsilon)
