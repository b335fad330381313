"""Recording scopes and backward (Gluon's `autograd`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from paramstore._memory import keep_freed_memory
from paramstore._tape import (
    STATE,
    Leaf,
    Node,
    check_not_freed,
    free,
    ops_newest_first,
    run_backward,
    store_leaf_grads,
)
from paramstore.base import EngineError

if TYPE_CHECKING:
    from paramstore.nd import NDArray

__all__ = [
    "Function",
    "backward",
    "grad",
    "is_recording",
    "is_training",
    "mark_variables",
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


def record(train_mode: bool = True) -> AbstractContextManager[None]:
    """Record operations for backward; training mode as given (default on)."""
    keep_freed_memory()  # training repeats the same large allocations every step
    return _scope(True, train_mode)


def pause(train_mode: bool = False) -> AbstractContextManager[None]:
    """Stop recording inside the block; training mode as given (default off)."""
    return _scope(False, train_mode)


def train_mode() -> AbstractContextManager[None]:
    """Training behaviour (Dropout, BatchNorm) without changing recording."""
    return _scope(None, True)


def predict_mode() -> AbstractContextManager[None]:
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

    variable_list = [variables] if isinstance(variables, NDArray) else list(variables)
    for variable in variable_list:
        if not isinstance(variable._node, Leaf):
            raise EngineError("grad() variables must be marked with attach_grad()")
    nodes, seeds = _heads_and_grads(heads, head_grads)
    if create_graph:
        retain = create_graph if retain_graph is None else retain_graph
        leaves: dict = _graph_backward(nodes, seeds, retain)
    else:
        leaves = {node: NDArray._wrap(grad)
                  for node, grad in run_backward(nodes, seeds, bool(retain_graph)).items()}
    return [leaves[v._node] if v._node in leaves else zeros_like(v) for v in variable_list]


def _graph_backward(nodes: list[Node], seeds: list[np.ndarray], retain_graph: bool) -> dict:
    """The reverse walk with recorded NDArray ops: gradients that can be differentiated again.

    Raises `NotImplementedError` naming an op that has no higher-order gradient.
    """
    from paramstore.nd import NDArray

    check_not_freed(nodes)
    grads: dict[Node, NDArray] = {}
    for node, seed in zip(nodes, seeds):
        seed_array = NDArray._wrap(seed)
        grads[node] = grads[node] + seed_array if node in grads else seed_array
    order = ops_newest_first(nodes)
    with _scope(True, None):
        for node in order:
            grad = grads.pop(node, None)
            if grad is None:
                continue
            if node.graph_backward is None:
                raise NotImplementedError(
                    f"create_graph=True: the gradient of {node.op} cannot be differentiated "
                    "again; higher-order gradients cover the elementwise ops, sum and mean"
                )
            for parent, parent_grad in zip(node.inputs, node.graph_backward(grad, node.needs)):
                if parent is None or parent_grad is None:
                    continue
                if parent_grad._node is None:
                    # A gradient constant in the inputs (relu's, say) still depends on them in
                    # the graph, with a zero derivative, so it can be differentiated again.
                    parent_grad._node = _zero_derivative(node, parent_grad.shape)
                previous = grads.get(parent)
                grads[parent] = parent_grad if previous is None else previous + parent_grad
    if not retain_graph:
        free(order)
    return grads


def _zero_derivative(node: Node, shape: tuple[int, ...]) -> Node:
    inputs = node.inputs
    return Node(
        f"{node.op}_backward", inputs, node.needs,
        lambda g, needs: [None if p is None else np.zeros(p.shape, g.dtype) for p in inputs],
        shape, lambda g, needs: [None] * len(inputs),
    )


def mark_variables(
    variables: NDArray | Sequence[NDArray],
    gradients: NDArray | Sequence[NDArray],
    grad_reqs: str | Sequence[str] = "write",
) -> None:
    """Make each array a variable whose gradient `backward` writes into the given array.

    Raises `ValueError` when the lists differ in length or a gradient's shape is not its
    variable's.
    """
    from paramstore.nd import NDArray

    variable_list = [variables] if isinstance(variables, NDArray) else list(variables)
    gradient_list = [gradients] if isinstance(gradients, NDArray) else list(gradients)
    reqs = [grad_reqs] * len(variable_list) if isinstance(grad_reqs, str) else list(grad_reqs)
    if not len(variable_list) == len(gradient_list) == len(reqs):
        raise ValueError(
            f"got {len(variable_list)} variables, {len(gradient_list)} gradients and "
            f"{len(reqs)} grad_reqs"
        )
    for variable, gradient, req in zip(variable_list, gradient_list, reqs):
        if gradient.shape != variable.shape:
            raise ValueError(
                f"gradient of shape {gradient.shape} for a variable of shape {variable.shape}"
            )
        if req not in ("write", "add", "null"):
            raise ValueError(f"grad_req must be 'write', 'add' or 'null', got {req!r}")
        variable._node = Leaf(gradient._data, req)


class Function:
    """An operation with a hand-written gradient, as in Gluon:

        class Sigmoid(autograd.Function):
            def forward(self, x):
                y = 1 / (1 + nd.exp(-x))
                self.save_for_backward(y)
                return y

            def backward(self, dy):
                (y,) = self.saved_tensors
                return dy * y * (1 - y)

    `Sigmoid()(x)` runs `forward` without recording its inner ops and puts one node on the
    tape whose gradient is `backward`'s: one NDArray per input, given one per output.
    """

    def __init__(self) -> None:
        self.saved_tensors: tuple = ()

    def save_for_backward(self, *args: Any) -> None:
        self.saved_tensors = args

    def forward(self, *inputs: NDArray) -> NDArray | tuple[NDArray, ...]:
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, *output_grads: NDArray) -> NDArray | tuple[NDArray, ...]:
        raise NotImplementedError(f"{type(self).__name__} must define backward")

    def __call__(self, *inputs: NDArray) -> NDArray | tuple[NDArray, ...]:
        from paramstore._tape import record
        from paramstore.nd import NDArray

        with pause(is_training()):
            outputs = self.forward(*inputs)
        several = isinstance(outputs, (list, tuple))
        output_list = list(outputs) if several else [outputs]
        for position, output in enumerate(output_list):
            # One node per output; each sends back the gradient of its output alone (the
            # others' are zero), which backward's linearity makes exact.
            def send_back(g: np.ndarray, needs: tuple[bool, ...], position: int = position) -> Any:
                grads = [NDArray._wrap(np.zeros_like(o._data)) for o in output_list]
                grads[position] = NDArray._wrap(g)
                with pause(is_training()):
                    result = self.backward(*grads)
                result_list = list(result) if isinstance(result, (list, tuple)) else [result]
                if len(result_list) != len(inputs):
                    raise EngineError(
                        f"{type(self).__name__}.backward returned {len(result_list)} gradients "
                        f"for {len(inputs)} inputs"
                    )
                return [np.asarray(r._data if isinstance(r, NDArray) else r, dtype=g.dtype)
                        for r in result_list]

            output._node = None
            record(type(self).__name__, output, tuple(inputs), send_back)
        return outputs
