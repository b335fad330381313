"""The tape: which op made an array, and how to send its gradient back.

An array on the tape carries a `Node`. A leaf node belongs to an array marked for gradients
(`attach_grad`, an initialized Parameter) and owns its gradient buffer; an op node remembers the
nodes of its inputs and a backward function `backward(out_grad, needs) -> input grads`, where
`needs[i]` says whether input i wants a gradient (so costly ops can skip the rest). Recording
is off by default and costs nothing then: ops only look at `STATE.recording`.
"""

from __future__ import annotations

import itertools
import operator
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
    """An op's place on the tape: its inputs' nodes and how to send its gradient back."""

    __slots__ = ("op", "inputs", "needs", "backward", "shape", "seq", "graph_backward")

    def __init__(
        self,
        op: str,
        inputs: tuple[Node | None, ...],
        needs: tuple[bool, ...],
        backward: Backward | None,
        shape: tuple[int, ...],
        graph_backward: Callable | None = None,
    ) -> None:
        self.op = op
        self.inputs = inputs
        self.needs = needs
        self.backward = backward
        self.shape = shape
        self.seq = next(_sequence)  # creation order is a topological order of the graph
        # The same backward written with recorded NDArray ops (out_grad -> input grads), for
        # higher-order gradients; only ops with a second derivative have one.
        self.graph_backward = graph_backward


class Leaf(Node):
    """A variable: an array marked for gradients, owning its gradient buffer."""

    __slots__ = ("grad", "grad_req", "fresh")

    def __init__(self, grad: np.ndarray, grad_req: str) -> None:
        super().__init__("variable", (), (), None, grad.shape)
        self.grad = grad
        self.grad_req = grad_req
        self.fresh = False  # written by a backward since the last optimizer step


_sequence = itertools.count()
_by_creation = operator.attrgetter("seq")
_ONE = (True,)
_BOTH, _FIRST, _SECOND = (True, True), (True, False), (False, True)


def _freed(grad: np.ndarray, needs: tuple[bool, ...]) -> Sequence[Any]:
    raise EngineError(NOT_IN_GRAPH)


# Recording is on the hot path of every op, so one- and two-input ops have their own recorders.
def record1(
    op: str, out: Any, x: Any, backward: Backward, graph_backward: Callable | None = None
) -> Any:
    """Put `out` (computed from `x`) on the tape when recording and `x` is on it."""
    node = x._node
    if node is not None and STATE.recording:
        out._node = Node(op, (node,), _ONE, backward, out._data.shape, graph_backward)
    return out


def record2(
    op: str, out: Any, a: Any, b: Any, backward: Backward, graph_backward: Callable | None = None
) -> Any:
    """Put `out` (computed from `a` and `b`) on the tape when recording and an input is on it."""
    first, second = a._node, b._node
    if (first is not None or second is not None) and STATE.recording:
        needs = _BOTH if first is not None and second is not None else (
            _FIRST if first is not None else _SECOND)
        out._node = Node(op, (first, second), needs, backward, out._data.shape, graph_backward)
    return out


def record(op: str, out: Any, inputs: tuple[Any, ...], backward: Backward) -> Any:
    """Put `out` on the tape when recording and some input (None: not an array) is on it."""
    if STATE.recording:
        nodes = tuple([None if a is None else a._node for a in inputs])
        if nodes.count(None) != len(nodes):
            needs = tuple([node is not None for node in nodes])
            out._node = Node(op, nodes, needs, backward, out._data.shape)
    return out


def ops_newest_first(heads: list[Node]) -> list[Node]:
    """The op nodes reachable from the heads, newest first: each before all of its inputs."""
    seen: set[Node] = set()
    stack = [node for node in heads if node.backward is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for parent in node.inputs:
            if parent is not None and parent.backward is not None and parent not in seen:
                stack.append(parent)
    return sorted(seen, key=_by_creation, reverse=True)


def check_not_freed(heads: list[Node]) -> None:
    for node in heads:
        if node.backward is _freed:
            raise EngineError(NOT_IN_GRAPH)


def free(order: list[Node]) -> None:
    """Release the backward functions (and the arrays they hold) of a walked graph."""
    for node in order:
        node.backward = _freed
        node.graph_backward = None


def run_backward(
    heads: list[Node], head_grads: list[np.ndarray], retain_graph: bool
) -> dict[Node, np.ndarray]:
    """Walk the graph once in reverse, adding gradients; return each reached leaf's gradient."""
    check_not_freed(heads)
    grads: dict[Node, np.ndarray] = {}
    for node, grad in zip(heads, head_grads):
        grads[node] = grads[node] + grad if node in grads else grad
    order = ops_newest_first(heads)
    for node in order:
        grad = grads.pop(node, None)
        if grad is None:
            continue
        input_grads = node.backward(grad, node.needs)  # type: ignore[misc]
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
        free(order)
    return grads  # what is left: the leaves' gradients


def store_leaf_grads(leaves: dict[Leaf, np.ndarray]) -> None:
    """Write (grad_req 'write') or add ('add') each leaf's gradient into its buffer."""
    for node, grad in leaves.items():
        buffer = node.grad
        if node.grad_req == "null":
            continue
        if node.grad_req == "add":
            buffer += grad
        else:
            np.copyto(buffer, grad, casting="unsafe")
        node.fresh = True
