"""The activation layers beyond `Activation` and `LeakyReLU`: ELU, SELU, PReLU, GELU, Swish.
Names, parameters and reprs are Gluon 1.x's."""

from __future__ import annotations

from typing import Any

from paramstore import init
from paramstore.gluon.block import HybridBlock

__all__ = ["ELU", "GELU", "PReLU", "SELU", "Swish"]


class ELU(HybridBlock):
    """`x` where positive, `alpha * (exp(x) - 1)` elsewhere."""

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._alpha = alpha

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        return F.LeakyReLU(x, act_type="elu", slope=self._alpha)


class SELU(HybridBlock):
    """The self-normalizing ELU: `scale * elu(x, alpha)` with Klambauer et al.'s constants."""

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        return F.LeakyReLU(x, act_type="selu")


class GELU(HybridBlock):
    """`x * Phi(x)`, Phi the standard normal distribution function (erf form)."""

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        return F.LeakyReLU(x, act_type="gelu")


class Swish(HybridBlock):
    """`x * sigmoid(beta * x)`."""

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._beta = beta

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        return x * F.sigmoid(self._beta * x)


class PReLU(HybridBlock):
    """`x` where non-negative, `alpha * x` elsewhere, with `alpha` learnt: one value
    (`in_channels=1`) or one per channel of axis 1. Parameter `alpha`, initialized by
    `alpha_initializer` (default Constant(0.25))."""

    def __init__(
        self, alpha_initializer: Any = None, in_channels: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if alpha_initializer is None:
            alpha_initializer = init.Constant(0.25)
        with self.name_scope():
            self.alpha = self.params.get("alpha", shape=(in_channels,), init=alpha_initializer)

    def hybrid_forward(self, F: Any, x: Any, alpha: Any) -> Any:
        return F.LeakyReLU(x, gamma=alpha, act_type="prelu")
