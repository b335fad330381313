"""The tape: which op made an array, and how to send its gradient back.

An array on the tape carries a `Node`. A leaf node belongs to an array marked for gradients
(`attach_grad`, an initialized Parameter) and owns its gradient buffer; an op node remembers the
nodes of its inputs and a backward function `backward(out_grad, needs) -> input grads`, where
`needs[i]` says whether input i wants a gradient (so costly ops can skip the rest). Recording
is off by default and costs nothing then: ops only look at `STATE.recording`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from paramstore.base import EngineError

Backward = Callable[[np.ndarray, tuple[bool, ...]], Sequence[Any]]

NOT_IN_GRAPH = (
    "Cannot differentiate node because it is not in a computational graph. You need to set "
    "is_recording to true or use autograd.record() to save computational graphs for backward. "
    "If you want to differentiate the same graph twice, you need to pass retain_graph=True to "
    "backward."
)


class _State(threading.local):
    recording = False
    training = False


STATE = _State()


class Node:
    __slots__ = ("op", "inputs", "needs", "backward", "shape", "grad", "grad_req", "fresh")

    def __init__(
        self,
        op: str,
        inputs: tuple[Node | None, ...],
        backward: Backward | None,
        shape: tuple[int, ...],
    ) -> None:
        self.op = op
        self.inputs = inputs
        self.needs = tuple(node is not None for node in inputs)
        self.backward = backward
        self.shape = shape
        self.grad: np.ndarray | None = None  # a leaf's gradient buffer
        self.grad_req = "write"
        self.fresh = False  # a leaf's buffer was written by a backward since the last step

    @classmethod
    def leaf(cls, grad: np.ndarray, grad_req: str) -> Node:
        node = cls("variable", (), None, grad.shape)
        node.grad = grad
        node.grad_req = grad_req
        return node


def _freed(grad: np.ndarray, needs: tuple[bool, ...]) -> Sequence[Any]:
    raise EngineError(NOT_IN_GRAPH)


def record(op: str, out: Any, inputs: tuple[Any, ...], backward: Backward) -> Any:
    """Put `out` on the tape when recording and some input is on it; return `out`."""
    if STATE.recording:
        nodes = tuple(a._node if a is not None else None for a in inputs)
        for node in nodes:
            if node is not None:
                out._node = Node(op, nodes, backward, out._data.shape)
                break
    return out


def _topological(heads: list[Node]) -> list[Node]:
    """Nodes reachable from the heads, each after all of its inputs; iterative, never recursive."""
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(h, False) for h in reversed(heads)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node.inputs:
            if parent is not None and id(parent) not in visited:
                stack.append((parent, False))
    return order


def run_backward(
    heads: list[Node], head_grads: list[np.ndarray], retain_graph: bool
) -> dict[Node, np.ndarray]:
    """Walk the graph once in reverse, adding gradients; return each reached leaf's gradient."""
    for node in heads:
        if node.backward is _freed:
            raise EngineError(NOT_IN_GRAPH)
    grads: dict[Node, np.ndarray] = {}
    for node, grad in zip(heads, head_grads):
        grads[node] = grads[node] + grad if node in grads else grad
    leaves: dict[Node, np.ndarray] = {}
    for node in reversed(_topological(heads)):
        grad = grads.pop(node, None)
        if grad is None:
            continue
        if node.backward is None:
            leaves[node] = grad
            continue
        input_grads = node.backward(grad, node.needs)
        if not retain_graph:
            node.backward = _freed
        for parent, parent_grad in zip(node.inputs, input_grads):
            if parent is None or parent_grad is None:
                continue
            if parent_grad.shape != parent.shape:
                raise EngineError(
                    f"backward of {node.op} produced a gradient of shape {parent_grad.shape} "
                    f"for an input of shape {parent.shape}"
                )
            previous = grads.get(parent)
            grads[parent] = parent_grad if previous is None else previous + parent_grad
    if not retain_graph:
        for node in heads:
            if node.backward is not None:
                node.backward = _freed
    return leaves


def store_leaf_grads(leaves: dict[Node, np.ndarray]) -> None:
    """Write (grad_req 'write') or add ('add') each leaf's gradient into its buffer."""
    for node, grad in leaves.items():
        buffer = node.grad
        if buffer is None or node.grad_req == "null":
            continue
        if node.grad_req == "add":
            buffer += grad
        else:
            np.copyto(buffer, grad, casting="unsafe")
        node.fresh = True
