"""Losses (Gluon's `gluon.loss`): one value per sample, built from `nd` operators.

Every loss computes an elementwise loss, multiplies it by `sample_weight` (broadcast, optional)
and by the scalar `weight`, then averages over every axis but `batch_axis`: `loss(pred, label)`
has shape `(batch,)`. Gradients come from the operators' own backward functions.
"""

from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any

from paramstore import nd
from paramstore.gluon.block import HybridBlock
from paramstore.nd import NDArray

__all__ = [
    "CTCLoss",
    "CosineEmbeddingLoss",
    "HingeLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "L2Loss",
    "LogisticLoss",
    "Loss",
    "PoissonNLLLoss",
    "SigmoidBCELoss",
    "SigmoidBinaryCrossEntropyLoss",
    "SoftmaxCELoss",
    "SoftmaxCrossEntropyLoss",
    "SquaredHingeLoss",
    "TripletLoss",
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

    def _per_sample(self, loss: NDArray, reduce: Any = nd.mean) -> NDArray:
        """The mean (or `reduce`) over every axis but the batch axis (the loss itself when
        there is none)."""
        batch_axis = self._batch_axis % loss.ndim
        others = tuple(axis for axis in range(loss.ndim) if axis != batch_axis)
        return reduce(loss, axis=others) if others else loss


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


class HuberLoss(Loss):
    """The smoothed L1 error: `|e| - rho/2` where `|e| > rho`, else `e^2 / (2 rho)`, per sample."""

    def __init__(self, rho: float = 1, weight: float | None = None, batch_axis: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._rho = rho

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        error = F.abs(_label_like(label, pred) - pred)
        loss = F.where(error > self._rho, error - 0.5 * self._rho,
                       (0.5 / self._rho) * F.square(error))
        return self._per_sample(self._weighted(loss, sample_weight, self._weight))


class HingeLoss(Loss):
    """`max(0, margin - pred * label)` for labels in {-1, 1}, averaged per sample."""

    _power = 1

    def __init__(self, margin: float = 1, weight: float | None = None, batch_axis: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        loss = F.relu(self._margin - pred * _label_like(label, pred))
        if self._power == 2:
            loss = F.square(loss)
        return self._per_sample(self._weighted(loss, sample_weight, self._weight))


class SquaredHingeLoss(HingeLoss):
    """`max(0, margin - pred * label)^2` for labels in {-1, 1}, averaged per sample."""

    _power = 2


class LogisticLoss(Loss):
    """`log(1 + exp(-pred * label))` for labels in {-1, 1} (`label_format='signed'`) or
    {0, 1} (`'binary'`), in a form that never overflows, averaged per sample.
    """

    def __init__(self, weight: float | None = None, batch_axis: int = 0,
                 label_format: str = "signed", **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        if label_format not in ("signed", "binary"):
            raise ValueError(
                f"label_format can only be signed or binary, recieved {label_format}.")
        self._label_format = label_format

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        label = _label_like(label, pred)
        if self._label_format == "signed":
            label = (label + 1.0) / 2.0
        loss = F.relu(pred) - pred * label + F.softrelu(-F.abs(pred))
        return self._per_sample(self._weighted(loss, sample_weight, self._weight))


class KLDivLoss(Loss):
    """`label * (log(label) - pred)` summed per sample, with `pred` log-probabilities
    (`from_logits=True`, the default) or scores taken through `log_softmax` along `axis`.
    """

    def __init__(self, from_logits: bool = True, axis: int = -1, weight: float | None = None,
                 batch_axis: int = 0, **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits = from_logits
        self._axis = axis

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, sample_weight: NDArray | None = None
    ) -> NDArray:
        if not self._from_logits:
            pred = F.log_softmax(pred, self._axis)
        loss = label * (F.log(label + _EPSILON) - pred)
        return self._per_sample(self._weighted(loss, sample_weight, self._weight), F.sum)


class TripletLoss(Loss):
    """`max(0, ||pred - positive||^2 - ||pred - negative||^2 + margin)` per sample:
    called as `loss(pred, positive, negative)`.
    """

    def __init__(self, margin: float = 1, weight: float | None = None, batch_axis: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, positive: NDArray, negative: NDArray
    ) -> NDArray:
        gap = F.square(_label_like(positive, pred) - pred) - F.square(
            _label_like(negative, pred) - pred)
        loss = F.relu(self._per_sample(gap, F.sum) + self._margin)
        return self._weighted(loss, None, self._weight)


class PoissonNLLLoss(Loss):
    """The negative log-likelihood of `target` under a Poisson of rate `exp(pred)`
    (`from_logits=True`) or `pred`, averaged over every element: one value, shape (1,).

    `compute_full` adds Stirling's approximation of `log(target!)` for targets above 1.
    """

    def __init__(self, weight: float | None = None, from_logits: bool = True,
                 batch_axis: int = 0, compute_full: bool = False, **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits = from_logits
        self._compute_full = compute_full

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, target: NDArray,
        sample_weight: NDArray | None = None, epsilon: float = 1e-08,
    ) -> NDArray:
        target = _label_like(target, pred)
        if self._from_logits:
            loss = F.exp(pred) - target * pred
        else:
            loss = pred - target * F.log(pred + epsilon)
        if self._compute_full:
            stirling = target * F.log(target) - target + 0.5 * F.log(2 * target * math.pi)
            loss = loss + stirling * (target > 1)
        return F.mean(self._weighted(loss, sample_weight, self._weight))


class CosineEmbeddingLoss(Loss):
    """`1 - cos(input1, input2)` for label 1 and `max(0, cos - margin)` for label -1, one
    value per sample of shape (N, 1): called as `loss(input1, input2, label)`.
    """

    def __init__(self, weight: float | None = None, batch_axis: int = 0, margin: float = 0,
                 **kwargs: Any) -> None:
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def hybrid_forward(
        self, F: ModuleType, input1: NDArray, input2: NDArray, label: NDArray,
        sample_weight: NDArray | None = None,
    ) -> NDArray:
        input1 = _label_like(input1, input2)
        label = label.reshape((-1, 1))
        norms = F.norm(input1, axis=-1).reshape((-1, 1)) * F.norm(input2, axis=-1).reshape(
            (-1, 1))
        cosine = F.sum(input1 * input2, axis=-1).reshape((-1, 1)) / F.maximum(
            norms, F.array([_EPSILON]))
        similar = (1 - cosine) * (label == 1)
        dissimilar = F.maximum(F.array([0]), (label == -1) * (cosine - self._margin))
        return self._weighted(similar + dissimilar, sample_weight, self._weight)


class CTCLoss(Loss):
    """Connectionist temporal classification: `-log p(label | pred)` per sample.

    `pred` holds unnormalized scores laid out 'NTC' (default) or 'TNC', with the blank as the
    last class; `label` ('NT' or 'TN') holds class indices padded with -1 (or cut by
    `label_lengths`); `pred_lengths` gives each sequence's length. Called as
    `loss(pred, label, pred_lengths=None, label_lengths=None, sample_weight=None)`.
    """

    def __init__(self, layout: str = "NTC", label_layout: str = "NT",
                 weight: float | None = None, **kwargs: Any) -> None:
        if layout not in ("NTC", "TNC"):
            raise AssertionError(
                f"Only 'NTC' and 'TNC' layouts for pred are supported. Got: {layout}")
        if label_layout not in ("NT", "TN"):
            raise AssertionError(
                f"Only 'NT' and 'TN' layouts for label are supported. Got: {label_layout}")
        self._layout = layout
        self._label_layout = label_layout
        super().__init__(weight, label_layout.find("N"), **kwargs)

    def hybrid_forward(
        self, F: ModuleType, pred: NDArray, label: NDArray, pred_lengths: NDArray | None = None,
        label_lengths: NDArray | None = None, sample_weight: NDArray | None = None,
    ) -> NDArray:
        if self._layout == "NTC":
            pred = F.transpose(pred, (1, 0, 2))
        if self._batch_axis == 1:
            label = F.transpose(label)
        loss = F.ctc_loss(pred, label, pred_lengths, label_lengths,
                          use_data_lengths=pred_lengths is not None,
                          use_label_lengths=label_lengths is not None, blank_label="last")
        return self._weighted(loss, sample_weight, self._weight)
