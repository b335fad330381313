"""`nd.LeakyReLU`: the leaky, parametric, exponential and Gaussian linear units, each with its
gradient beside it (Gluon's ELU, SELU, PReLU and GELU layers run it)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramstore._tape import record as _record
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray

__all__ = ["LeakyReLU"]

_wrap = NDArray._wrap
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def _negative_part(x: np.ndarray, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """ELU's `slope * (exp(x) - 1)` where x <= 0, and its derivative."""
    e = np.exp(np.minimum(x, 0))
    return slope * (e - 1), slope * e


def _forward(act_type: str, x: np.ndarray, slope: Any) -> tuple[np.ndarray, np.ndarray]:
    """The activation and its derivative, elementwise."""
    positive = x > 0
    if act_type in ("leaky", "prelu"):
        return np.where(positive, x, slope * x), np.where(positive, 1, slope)
    if act_type == "elu":
        value, derivative = _negative_part(x, slope)
        return np.where(positive, x, value), np.where(positive, 1, derivative)
    if act_type == "selu":
        value, derivative = _negative_part(x, _SELU_ALPHA)
        return (_SELU_SCALE * np.where(positive, x, value),
                _SELU_SCALE * np.where(positive, 1, derivative))
    # gelu: x * Phi(x), with Phi the standard normal's distribution function. SciPy loads
    # here, on first use: importing it costs a second, which every process would pay.
    from scipy.special import erf

    phi = 0.5 * (1 + erf(x * _SQRT_HALF))
    return x * phi, phi + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI


def LeakyReLU(
    data: NDArray,
    gamma: NDArray | None = None,
    act_type: str = "leaky",
    slope: float = 0.25,
    **ignored: Any,
) -> NDArray:
    """`act_type` 'leaky' (`x` or `slope*x`), 'prelu' (the slope per channel from `gamma`,
    along axis 1), 'elu' (`slope*(exp(x)-1)` below 0), 'selu' or 'gelu' (erf form)."""
    if act_type not in ("leaky", "prelu", "elu", "selu", "gelu"):
        raise EngineError(
            f"LeakyReLU: act_type must be leaky, prelu, elu, selu or gelu, got {act_type!r}"
        )
    x = data._data
    if act_type == "prelu":
        if gamma is None:
            raise EngineError("LeakyReLU: act_type 'prelu' needs gamma")
        g_data = gamma._data
        channels = x.shape[1] if x.ndim > 1 else 1
        if g_data.ndim != 1 or g_data.shape[0] not in (1, channels):
            raise EngineError(
                f"LeakyReLU: gamma of shape {g_data.shape} must have 1 or {channels} values "
                f"for input of shape {x.shape}"
            )
        along = (1, -1) + (1,) * (x.ndim - 2) if x.ndim > 1 else (-1,)
        slope = g_data.reshape(along)
    value, derivative = _forward(act_type, x, slope)
    out = _wrap(value.astype(x.dtype, copy=False))

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        gx = (g * derivative).astype(x.dtype, copy=False) if needs[0] else None
        if len(needs) == 1:
            return (gx,)
        per_element = np.where(x > 0, 0, g * x)
        axes = tuple(i for i in range(x.ndim) if i != 1 or g_data.shape[0] == 1)
        return gx, per_element.sum(axis=axes).reshape(g_data.shape).astype(g_data.dtype)

    inputs = (data,) if act_type != "prelu" else (data, gamma)
    return _record("LeakyReLU", out, inputs, backward)
