"""`nd.InstanceNorm` and `nd.GroupNorm`, built from `nd` operators: their gradients come from
the tape."""

from __future__ import annotations

from typing import Any

from paramstore import nd
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray

__all__ = ["GroupNorm", "InstanceNorm"]


def _standardize(x: NDArray, axes: tuple[int, ...], eps: float) -> NDArray:
    """`(x - mean) / sqrt(var + eps)` over `axes`, with the biased variance."""
    mean = nd.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    return centered / nd.sqrt(nd.mean(nd.square(centered), axis=axes, keepdims=True) + eps)


def _per(vector: NDArray, count: int, ndim: int, what: str, name: str) -> NDArray:
    if vector.shape != (count,):
        raise EngineError(f"{what}: {name} should have shape ({count},), got {vector.shape}")
    return vector.reshape((1, count) + (1,) * (ndim - 2))


def InstanceNorm(
    data: NDArray, gamma: NDArray, beta: NDArray, eps: float = 1e-3, **ignored: Any
) -> NDArray:
    """Normalize each sample's each channel (axis 1) over the remaining axes, then
    `* gamma + beta` per channel."""
    if data.ndim < 3:
        raise EngineError(f"InstanceNorm: input should have 3 or more axes, got {data.shape}")
    channels = data.shape[1]
    out = _standardize(data, tuple(range(2, data.ndim)), eps)
    scale = _per(gamma, channels, data.ndim, "InstanceNorm", "gamma")
    return out * scale + _per(beta, channels, data.ndim, "InstanceNorm", "beta")


def GroupNorm(
    data: NDArray, gamma: NDArray, beta: NDArray, num_groups: int = 1, eps: float = 1e-5,
    **ignored: Any,
) -> NDArray:
    """Split the channels (axis 1) into `num_groups` groups, normalize each sample's each
    group, then `* gamma + beta` per group."""
    if data.ndim < 2 or num_groups < 1 or data.shape[1] % num_groups:
        raise EngineError(
            f"GroupNorm: the channels of input {data.shape} cannot form {num_groups} groups"
        )
    grouped = data.reshape((data.shape[0], num_groups, -1))
    out = _standardize(grouped, (2,), eps)
    out = out * _per(gamma, num_groups, 3, "GroupNorm", "gamma")
    out = out + _per(beta, num_groups, 3, "GroupNorm", "beta")
    return out.reshape(data.shape)
