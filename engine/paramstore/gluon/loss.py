"""Losses (Gluon's `gluon.loss`): one value per sample, built from `nd` operators.

Every loss computes an elementwise loss, multiplies it by `sample_weight` (broadcast, optional)
and by the scalar `weight`, then averages over every axis but `batch_axis`: `loss(pred, label)`
has shape `(batch,)`. Gradients come from the operators' own backward functions.
"""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

from paramstore import nd
from paramstore.gluon.block import HybridBlock
from paramstore.nd import NDArray

__all__ = [
    "L1Loss",
    "L2Loss",
    "Loss",
    "SigmoidBCELoss",
    "SigmoidBinaryCrossEntropyLoss",
    "SoftmaxCELoss",
    "SoftmaxCrossEntropyLoss",
]

# Keeps log() finite for probabilities of exactly 0 or 1 (from_sigmoid=True).
_EPSILON = 1e-12


class Loss(HybridBlock):
    """The base of every loss: a block called as `loss(pred, label, sample_weight=None)`.

    `weight` (a number or None) scales the loss; `batch_axis` is the axis kept in the output.
    Subclasses define `hybrid_forward(F, pred, label, sample_weight=None)` with `F` the `nd`
    module.
    """

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs: Any) -> None:
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, numbers.Real)
        ):
            raise AssertionError("weight must be a number")
        super().__init__(**kwargs)
        self._weight = weight
        self._batch_axis = batch_axis

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_axis={self._batch_axis}, w={self._weight})"

    def _weighted(
        self, loss: NDArray, sample_weight: NDArray | None, weight: float | None
    ) -> NDArray:
        if sample_weight is not None:
            loss = nd.broadcast_mul(loss, sample_weight)
        if weight is not None:
            loss = loss * weight
        return loss

    def _per_sample(self, loss: NDArray) -> NDArray:
        """The mean over every axis but the batch axis (the loss itself when there is none)."""
        batch_axis = self._batch_axis % loss.ndim
        others = tuple(axis for axis in range(loss.ndim) if axis != batch_axis)
        return nd.mean(loss, axis=others) if others else loss


def _label_like(label: NDArray, pred: NDArray) -> NDArray:
    return label.reshape(pred.shape)


class L2Loss(Loss):
    """Half the squared error: `weight/2 * (label - pred)^2`, averaged per sample.

    `label` may have any shape with as many elements as `pred`.
    """

    def __init__(self, weight: float = 1.0, batch_axis: int = 0, **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        loss = F.square(_label_like(label, pred) - pred)
        return self._per_sample(self._weighted(loss, sample_weight, self._weight / 2))


class L1Loss(Loss):
    """The absolute error `|label - pred|`, averaged per sample."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        loss = F.abs(_label_like(label, pred) - pred)
        return self._per_sample(self._weighted(loss, sample_weight, self._weight))


class SoftmaxCrossEntropyLoss(Loss):
    """Cross-entropy of `softmax(pred)` along `axis` with the labels.

    Sparse labels (the default) are class indices, of shape `(N,)` or `(N, 1)`; float labels
    truncate toward zero and out-of-range ones are clipped into the classes. Dense labels
    (`sparse_label=False`) are distributions over `axis`. With `from_logits=True`, `pred`
    already holds log-probabilities.
    """

    def __init__(
        self,
        axis: int = -1,
        sparse_label: bool = True,
        from_logits: bool = False,
        weight: float | None = None,
        batch_axis: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._axis = axis
        self._sparse_label = sparse_label
        self._from_logits = from_logits

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        if self._sparse_label and not self._from_logits:
            # One op for the usual classifier loss; the per-sample axis is kept only where a
            # sample weight or a mean over other axes needs it.
            keepdims = sample_weight is not None or pred.ndim != 2 or self._batch_axis % 2 != 0
            loss = F.sparse_softmax_cross_entropy(pred, label, axis=self._axis, keepdims=keepdims)
            return self._per_sample(self._weighted(loss, sample_weight, self._weight))
        log_probabilities = pred if self._from_logits else F.log_softmax(pred, axis=self._axis)
        if self._sparse_label:
            loss = -F.pick(log_probabilities, label, axis=self._axis, keepdims=True)
        else:
            label = _label_like(label, log_probabilities)
            loss = -F.sum(log_probabilities * label, axis=self._axis, keepdims=True)
        return self._per_sample(self._weighted(loss, sample_weight, self._weight))


SoftmaxCELoss = SoftmaxCrossEntropyLoss


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy of `sigmoid(pred)` (or of `pred` with `from_sigmoid=True`).

    Labels are in [0, 1], with as many elements as `pred`. From logits the loss uses the
    stable form `max(x, 0) - x z + log(1 + exp(-|x|))`. An optional `pos_weight` (a fourth
    argument, broadcast along the classes) weighs the positive examples.
    """

    def __init__(
        self, from_sigmoid: bool = False, weight: float | None = None, batch_axis: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._from_sigmoid = from_sigmoid

    def hybrid_forward(
        self,
        F: ModuleType,
        pred: NDArray,
        label: NDArray,
        sample_weight: NDArray | None = None,
        pos_weight: NDArray | None = None,
    ) -> NDArray:
        label = _label_like(label, pred)
        if self._from_sigmoid:
            positive = F.log(pred + _EPSILON) * label
            if pos_weight is not None:
                positive = F.broadcast_mul(positive, pos_weight)
            loss = -(positive + F.log(1.0 - pred + _EPSILON) * (1.0 - label))
        else:
            log_one_plus = F.softrelu(-F.abs(pred))  # log(1 + exp(-|x|)), never overflows
            if pos_weight is None:
                loss = F.relu(pred) - pred * label + log_one_plus
            else:
                positive_scale = 1.0 + F.broadcast_mul(pos_weight - 1.0, label)
                loss = pred - pred * label + positive_scale * (log_one_plus + F.relu(-pred))
        return self._per_sample(self._weighted(loss, sample_weight, self._weight))


SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss
