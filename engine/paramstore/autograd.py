"""Recording scopes and backward (Gluon's `autograd`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from paramstore._memory import keep_freed_memory
from paramstore._tape import STATE, run_backward, store_leaf_grads
from paramstore.base import EngineError

if TYPE_CHECKING:
    from paramstore.nd import NDArray

__all__ = [
    "backward",
    "grad",
    "is_recording",
    "is_training",
    "pause",
    "predict_mode",
    "record",
    "set_recording",
    "set_training",
    "train_mode",
]


def is_recording() -> bool:
    return STATE.recording


def is_training() -> bool:
    return STATE.training


def set_recording(is_recording: bool) -> bool:
    """Turn recording on or off; return what it was."""
    previous = STATE.recording
    STATE.recording = bool(is_recording)
    return previous


def set_training(train_mode: bool) -> bool:
    """Turn training mode on or off; return what it was."""
    previous = STATE.training
    STATE.training = bool(train_mode)
    return previous


@contextmanager
def _scope(recording: bool | None, training: bool | None) -> Iterator[None]:
    previous = (STATE.recording, STATE.training)
    if recording is not None:
        STATE.recording = recording
    if training is not None:
        STATE.training = training
    try:
        yield
    finally:
        STATE.recording, STATE.training = previous


def record(train_mode: bool = True) -> contextmanager:  # type: ignore[valid-type]
    """Record operations for backward; training mode as given (default on)."""
    keep_freed_memory()  # training repeats the same large allocations every step
    return _scope(True, train_mode)


def pause(train_mode: bool = False) -> contextmanager:  # type: ignore[valid-type]
    """Stop recording inside the block; training mode as given (default off)."""
    return _scope(False, train_mode)


def train_mode() -> contextmanager:  # type: ignore[valid-type]
    """Training behaviour (Dropout, BatchNorm) without changing recording."""
    return _scope(None, True)


def predict_mode() -> contextmanager:  # type: ignore[valid-type]
    """Inference behaviour without changing recording."""
    return _scope(None, False)


def _heads_and_grads(
    heads: NDArray | Sequence[NDArray], head_grads: NDArray | Sequence[NDArray | None] | None
) -> tuple[list, list[np.ndarray]]:
    from paramstore.nd import NDArray

    head_list = [heads] if isinstance(heads, NDArray) else list(heads)
    if head_grads is None:
        grad_list: list = [None] * len(head_list)
    elif isinstance(head_grads, NDArray):
        grad_list = [head_grads]
    else:
        grad_list = list(head_grads)
    if len(grad_list) != len(head_list):
        raise ValueError(f"got {len(head_list)} heads but {len(grad_list)} head gradients")
    nodes, seeds = [], []
    for head, seed in zip(head_list, grad_list):
        if head._node is None:
            raise EngineError(
                "Cannot differentiate node because it is not in a computational graph. You need "
                "to set is_recording to true or use autograd.record() to save computational "
                "graphs for backward. If you want to differentiate the same graph twice, you "
                "need to pass retain_graph=True to backward."
            )
        nodes.append(head._node)
        seeds.append(np.ones_like(head._data) if seed is None else np.asarray(seed, head.dtype))
    return nodes, seeds


def backward(
    heads: NDArray | Sequence[NDArray],
    head_grads: NDArray | Sequence[NDArray | None] | None = None,
    retain_graph: bool = False,
    train_mode: bool = True,
) -> None:
    """Compute gradients of the heads (summed) into every reached variable's grad buffer."""
    nodes, seeds = _heads_and_grads(heads, head_grads)
    store_leaf_grads(run_backward(nodes, seeds, retain_graph))


def grad(
    heads: NDArray | Sequence[NDArray],
    variables: NDArray | Sequence[NDArray],
    head_grads: NDArray | Sequence[NDArray | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    train_mode: bool = True,
) -> list[NDArray]:
    """Gradients of the heads with respect to `variables`, leaving their grad buffers alone."""
    from paramstore.nd import NDArray, zeros_like

    if create_graph:
        raise NotImplementedError("higher-order gradients (create_graph=True) are not supported")
    nodes, seeds = _heads_and_grads(heads, head_grads)
    leaves = run_backward(nodes, seeds, bool(retain_graph))
    variable_list = [variables] if isinstance(variables, NDArray) else list(variables)
    result = []
    for variable in variable_list:
        if variable._node is None or variable._node.backward is not None:
            raise EngineError("grad() variables must be marked with attach_grad()")
        leaf_grad = leaves.get(variable._node)
        result.append(zeros_like(variable) if leaf_grad is None else NDArray._wrap(leaf_grad))
    return result
