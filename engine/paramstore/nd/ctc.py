"""Connectionist temporal classification loss (Gluon's `nd.CTCLoss`), with its gradient.

The loss of a sequence is `-log` of the total probability of every alignment of its label,
computed by the forward-backward recursions in log space; the gradient with respect to the
unnormalized scores is `softmax - posterior of each class`, from the same two passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paramstore._tape import record as _record
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray

_NEVER = -np.inf


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logsumexp(*terms: np.ndarray) -> np.ndarray:
    stacked = np.stack(terms)
    top = stacked.max(axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(stacked - safe).sum(axis=0))


def _sequence(scores: np.ndarray, label: list[int], blank: int) -> tuple[float, np.ndarray]:
    """The loss of one sequence (T, C) with `label`, and its gradient with respect to `scores`."""
    steps = scores.shape[0]
    log_probs = _log_softmax(scores.astype(np.float64))
    extended = np.full(2 * len(label) + 1, blank)
    extended[1::2] = label
    size = len(extended)
    # A symbol may skip the blank before it unless it repeats the symbol two places back.
    skip = np.zeros(size, bool)
    skip[2:] = (extended[2:] != blank) & (extended[2:] != extended[:-2])
    emit = log_probs[:, extended]  # (T, S)
    alpha = np.full((steps, size), _NEVER)
    alpha[0, :2] = emit[0, :2]
    for t in range(1, steps):
        previous = alpha[t - 1]
        one_back = np.concatenate(([_NEVER], previous[:-1]))
        two_back = np.where(skip, np.concatenate(([_NEVER, _NEVER], previous[:-2])), _NEVER)
        alpha[t] = _logsumexp(previous, one_back, two_back) + emit[t]
    beta = np.full((steps, size), _NEVER)
    beta[-1, -2:] = emit[-1, -2:]
    skip_ahead = np.concatenate((skip[2:], [False, False]))
    for t in range(steps - 2, -1, -1):
        following = beta[t + 1]
        one_ahead = np.concatenate((following[1:], [_NEVER]))
        two_ahead = np.where(skip_ahead, np.concatenate((following[2:], [_NEVER, _NEVER])),
                             _NEVER)
        beta[t] = _logsumexp(following, one_ahead, two_ahead) + emit[t]
    total = _logsumexp(alpha[-1, -1], alpha[-1, -2]) if size > 1 else alpha[-1, -1]
    grad = np.exp(log_probs)
    if np.isfinite(total):
        posterior = alpha + beta - emit - total  # log P(symbol s at t | label)
        for s, symbol in enumerate(extended):
            grad[:, symbol] -= np.exp(posterior[:, s])
    else:
        grad[:] = 0.0
    return float(-total), grad


def ctc_loss(
    data: NDArray,
    label: NDArray,
    data_lengths: NDArray | None = None,
    label_lengths: NDArray | None = None,
    use_data_lengths: bool = False,
    use_label_lengths: bool = False,
    blank_label: str = "first",
) -> NDArray:
    """CTC loss of scores `data` (T, N, C) against `label` (N, L): one value per sequence.

    The blank is class 0 (`blank_label='first'`, labels padded with 0) or class C-1 (`'last'`,
    padded with -1); `data_lengths` and `label_lengths` cut each sequence when their `use_`
    flags are set. Differentiable in `data`. Raises `EngineError` for shapes that disagree.
    """
    if blank_label not in ("first", "last"):
        raise ValueError(f"ctc_loss: blank_label must be 'first' or 'last', got {blank_label!r}")
    x = data._data
    labels = np.asarray(label._data).astype(np.int64)
    if x.ndim != 3 or labels.ndim != 2 or labels.shape[0] != x.shape[1]:
        raise EngineError(
            f"ctc_loss: data of shape {x.shape} (T, N, C) and label of shape {labels.shape} "
            "(N, L) do not fit together"
        )
    steps, batch, classes = x.shape
    blank, padding = (0, 0) if blank_label == "first" else (classes - 1, -1)
    lengths = (data_lengths._data.astype(np.int64) if use_data_lengths and data_lengths is not None
               else np.full(batch, steps))
    losses = np.zeros(batch, dtype=x.dtype)
    grad = np.zeros_like(x, dtype=np.float64)
    for b in range(batch):
        row = labels[b]
        if use_label_lengths and label_lengths is not None:
            row = row[: int(label_lengths._data[b])]
        else:
            ends = np.flatnonzero(row == padding)
            row = row[: ends[0]] if ends.size else row
        if row.size and (row.min() < 0 or row.max() >= classes or (row == blank).any()):
            raise EngineError(f"ctc_loss: label {row.tolist()} of sequence {b} names the blank "
                              f"or a class outside 0..{classes - 1}")
        length = int(lengths[b])
        losses[b], grad[:length, b] = _sequence(x[:length, b], row.tolist(), blank)
    out = NDArray._wrap(losses)
    gradient = grad.astype(x.dtype)

    def backward(g: np.ndarray, needs: tuple[bool, ...]) -> tuple:
        return (gradient * g.reshape(1, batch, 1),) + (None,) * (len(needs) - 1)

    inputs: tuple[Any, ...] = (data, label)
    return _record("ctc_loss", out, inputs, backward)


CTCLoss = ctc_loss
