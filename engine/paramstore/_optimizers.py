"""The optimizers of Gluon 1.x besides SGD and Adam, each Gluon's update rule on NumPy arrays.

They are registered in `paramstore.optimizer` (import them from there): `optimizer.create("nag")`,
`Trainer(params, "rmsprop", {...})`. Each class's docstring gives its update with
`g = rescale_grad * grad`, clipped to `±clip_gradient`; where the weight decay enters the
gradient before or after clipping follows Gluon, rule by rule. Defaults are Gluon's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramstore import random as _random
from paramstore.optimizer import Optimizer, _real, register

State = tuple[np.ndarray, ...]


class _Momentum(Optimizer):
    """An optimizer whose one state, a momentum, exists only when `momentum` is not 0."""

    momentum: float

    def state_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0.0 else ()


@register
class NAG(_Momentum):
    """Nesterov accelerated gradient, with `g' = clip(g) + wd w` and a velocity `m`:
    `m <- momentum m`, `w <- w + momentum m - (1 + momentum) lr g'`, then
    `m <- m - lr (clip(g) + wd w)` with the weight just updated, as Gluon's in-place kernel
    computes it. Without momentum a plain SGD step.
    """

    _HYPER = ("momentum",)

    def __init__(self, momentum: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = _real("momentum", momentum)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        g = self._gradient(grad, weight, 0.0, decay_clipped=False)
        if not state:
            weight -= lr * (g + wd * weight)
            return
        (velocity,) = state
        velocity *= self.momentum
        weight += self.momentum * velocity - (1 + self.momentum) * lr * (g + wd * weight)
        velocity -= lr * (g + wd * weight)


@register
class Signum(_Momentum):
    """The sign of the gradient (signSGD) or of its momentum (Signum).

    Without momentum `w <- (1 - lr wd) w - lr sign(g)`; with it
    `m <- momentum m - (1 - momentum)(wd w + clip(g))`, `w <- (1 - lr wd_lh) w + lr sign(m)`.
    """

    _HYPER = ("momentum", "wd_lh")

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.9, wd_lh: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = _real("momentum", momentum)
        self.wd_lh = _real("wd_lh", wd_lh)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        g = self._gradient(grad, weight, 0.0, decay_clipped=False)
        if not state:
            weight *= 1 - lr * wd
            weight -= lr * np.sign(g)
            return
        (momentum,) = state
        momentum *= self.momentum
        momentum -= (1 - self.momentum) * (wd * weight + g)
        weight *= 1 - lr * self.wd_lh
        weight += lr * np.sign(momentum)


@register
class FTML(Optimizer):
    """Follow the Moving Leader: `g' = clip(g + wd w)`, at the t-th update
    `v <- beta2 v + (1 - beta2) g'^2`, `d_t = (1 - beta1^t) / lr (sqrt(v / (1 - beta2^t)) + eps)`,
    `z <- beta1 z + (1 - beta1) g' - (d_t - beta1 d_{t-1}) w`, `w <- -z / d_t`.
    """

    _HYPER = ("beta1", "beta2", "epsilon")
    _STATES = ("d", "v", "z")

    def __init__(self, beta1: float = 0.6, beta2: float = 0.999, epsilon: float = 1e-8,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta1, self.beta2 = _real("beta1", beta1), _real("beta2", beta2)
        self.epsilon = _real("epsilon", epsilon)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        d, v, z = state
        g = self._gradient(grad, weight, wd, decay_clipped=True)
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        d_t = (1 - self.beta1**count) / lr * (
            np.sqrt(v / (1 - self.beta2**count)) + self.epsilon)
        z *= self.beta1
        z += (1 - self.beta1) * g - (d_t - self.beta1 * d) * weight
        d[...] = d_t
        np.divide(-z, d_t, out=weight, casting="unsafe")


@register
class LAMB(Optimizer):
    """Layer-wise adaptive moments: Adam's step `r` (bias-corrected unless told otherwise) plus
    `wd w`, scaled per weight by `||w|| / ||r + wd w||` (`||w||` held within
    `[lower_bound, upper_bound]` when given; a zero norm gives a ratio of 1).
    """

    _HYPER = ("beta1", "beta2", "epsilon", "lower_bound", "upper_bound", "bias_correction")
    _STATES = ("mean", "var")

    def __init__(self, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-6, lower_bound: float | None = None,
                 upper_bound: float | None = None, bias_correction: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2 = _real("beta1", beta1), _real("beta2", beta2)
        self.epsilon = _real("epsilon", epsilon)
        self.lower_bound, self.upper_bound = (
            None if bound is None else _real(name, bound)
            for name, bound in (("lower_bound", lower_bound), ("upper_bound", upper_bound)))
        self.bias_correction = bool(bias_correction)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        mean, var = state
        g = self._gradient(grad, weight, 0.0, decay_clipped=False)
        mean *= self.beta1
        mean += (1 - self.beta1) * g
        var *= self.beta2
        var += (1 - self.beta2) * g * g
        if self.bias_correction:
            step = (mean / (1 - self.beta1**count)) / (
                np.sqrt(var / (1 - self.beta2**count)) + self.epsilon)
        else:
            step = mean / (np.sqrt(var) + self.epsilon)
        step += wd * weight
        weight_norm = float(np.linalg.norm(weight))
        if self.lower_bound:
            weight_norm = max(weight_norm, self.lower_bound)
        if self.upper_bound:
            weight_norm = min(weight_norm, self.upper_bound)
        step_norm = float(np.linalg.norm(step))
        ratio = 1.0 if weight_norm == 0 or step_norm == 0 else weight_norm / step_norm
        weight -= (lr * ratio) * step


@register
class SGLD(Optimizer):
    """Stochastic gradient Langevin dynamics: `w <- w - lr/2 (clip(g) + wd w) + N(0, lr)`."""

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        g = self._gradient(grad, weight, wd, decay_clipped=False)
        weight -= lr / 2 * g
        weight += _random.generator().normal(0.0, math.sqrt(lr), weight.shape).astype(
            weight.dtype)


@register
class Adamax(Optimizer):
    """Adam with the infinity norm: `g' = clip(g + wd w)`, `m <- beta1 m + (1 - beta1) g'`,
    `u <- max(beta2 u, |g'|)`, `w <- w - lr / (1 - beta1^t) m / u`.
    """

    _HYPER = ("beta1", "beta2")
    _STATES = ("mean", "var")

    def __init__(self, learning_rate: float = 0.002, beta1: float = 0.9, beta2: float = 0.999,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2 = _real("beta1", beta1), _real("beta2", beta2)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        mean, norm = state
        g = self._gradient(grad, weight, wd, decay_clipped=True)
        mean *= self.beta1
        mean += (1 - self.beta1) * g
        np.maximum(self.beta2 * norm, np.abs(g), out=norm)
        weight -= lr / (1 - self.beta1**count) * mean / norm


@register
class AdaDelta(Optimizer):
    """AdaDelta (no learning rate): `a <- rho a + (1 - rho) clip(g)^2`,
    `delta = sqrt(b + eps) / sqrt(a + eps) clip(g)`, `b <- rho b + (1 - rho) delta^2`,
    `w <- w - delta - wd w`.
    """

    _HYPER = ("rho", "epsilon")
    _STATES = ("acc_g", "acc_delta")

    def __init__(self, rho: float = 0.90, epsilon: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rho, self.epsilon = _real("rho", rho), _real("epsilon", epsilon)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        acc_g, acc_delta = state
        g = self._gradient(grad, weight, 0.0, decay_clipped=False)
        acc_g *= self.rho
        acc_g += (1 - self.rho) * g * g
        delta = np.sqrt(acc_delta + self.epsilon) / np.sqrt(acc_g + self.epsilon) * g
        acc_delta *= self.rho
        acc_delta += (1 - self.rho) * delta * delta
        weight -= delta + wd * weight


@register
class AdaGrad(Optimizer):
    """AdaGrad: `h <- h + clip(g)^2`, `w <- w - lr (clip(g) / sqrt(h + eps) + wd w)`."""

    _STATES = ("history",)

    def __init__(self, eps: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.float_stable_eps = _real("eps", eps)

    def _hyper_parameters(self) -> dict[str, Any]:
        return {**super()._hyper_parameters(), "eps": self.float_stable_eps}

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        (history,) = state
        g = self._gradient(grad, weight, 0.0, decay_clipped=False)
        history += g * g
        weight -= lr * (g / np.sqrt(history + self.float_stable_eps) + wd * weight)


@register
class RMSProp(Optimizer):
    """RMSProp with `g' = clip(g + wd w)` and `n <- gamma1 n + (1 - gamma1) g'^2`.

    Plain (Tieleman & Hinton): `w <- w - lr g' / sqrt(n + eps)`. Centered (Graves):
    also `m <- gamma1 m + (1 - gamma1) g'`, `delta <- gamma2 delta - lr g' / sqrt(n - m^2 + eps)`,
    `w <- w + delta`. With `clip_weights` the weight is then clipped to `±clip_weights`.
    """

    _HYPER = ("gamma1", "gamma2", "epsilon", "centered", "clip_weights")

    def __init__(self, learning_rate: float = 0.001, gamma1: float = 0.9, gamma2: float = 0.9,
                 epsilon: float = 1e-8, centered: bool = False,
                 clip_weights: float | None = None, **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.gamma1, self.gamma2 = _real("gamma1", gamma1), _real("gamma2", gamma2)
        self.epsilon = _real("epsilon", epsilon)
        self.centered = bool(centered)
        self.clip_weights = None if clip_weights is None else _real("clip_weights", clip_weights)

    def state_names(self) -> tuple[str, ...]:
        return ("n", "g", "delta") if self.centered else ("n",)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        g = self._gradient(grad, weight, wd, decay_clipped=True)
        n = state[0]
        n *= self.gamma1
        n += (1 - self.gamma1) * g * g
        if self.centered:
            _, mean, delta = state
            mean *= self.gamma1
            mean += (1 - self.gamma1) * g
            delta *= self.gamma2
            delta -= lr * g / np.sqrt(n - mean * mean + self.epsilon)
            weight += delta
        else:
            weight -= lr * g / np.sqrt(n + self.epsilon)
        if self.clip_weights:
            np.clip(weight, -self.clip_weights, self.clip_weights, out=weight)


@register
class Ftrl(Optimizer):
    """Follow the regularized leader (FTRL-proximal), with `g' = clip(g)`:
    `z <- z + g' - (sqrt(n + g'^2) - sqrt(n)) w / lr`, `n <- n + g'^2`,
    `w <- (sign(z) lamda1 - z) / ((beta + sqrt(n)) / lr + wd)` where `|z| > lamda1`, else 0.
    """

    _HYPER = ("lamda1", "beta")
    _STATES = ("z", "n")

    def __init__(self, lamda1: float = 0.01, learning_rate: float = 0.1, beta: float = 1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # As in Gluon, the rate is set after the base class, so a scheduler keeps its own.
        self.lr = _real("learning_rate", learning_rate)
        self.lamda1, self.beta = _real("lamda1", lamda1), _real("beta", beta)

    def _apply(self, weight: np.ndarray, grad: np.ndarray, state: State, lr: float, wd: float,
               count: int) -> None:
        z, n = state
        g = self._gradient(grad, weight, 0.0, decay_clipped=False)
        z += g - (np.sqrt(n + g * g) - np.sqrt(n)) * weight / lr
        n += g * g
        weight[...] = (np.sign(z) * self.lamda1 - z) / ((self.beta + np.sqrt(n)) / lr + wd) * (
            np.abs(z) > self.lamda1)
