"""Higher-order gradients, `mark_variables` and `autograd.Function`, against MXNet 1.9.1 where
it supports them (`oracle/autograd.json`) and against finite differences everywhere."""

import json
import pathlib

import numpy as np
import pytest
from oracle.autograd_cases import CASES
from oracle.heads import head_for

from paramstore import autograd, nd

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "autograd.json").read_text())


def second_order(f, x_values, dtype=np.float32):
    x = nd.array(x_values, dtype=dtype)
    x.attach_grad()
    with autograd.record():
        y = f(nd, x)
        (dx,) = autograd.grad(y, [x], head_grads=nd.ones_like(y), create_graph=True)
        weighted = (dx * nd.array(head_for(dx.shape), dtype=dtype)).sum()
    weighted.backward()
    return dx.asnumpy(), x.grad.asnumpy()


SUPPORTED = [case for case in CASES if "unsupported" not in RECORDED[case[0]]]


@pytest.mark.parametrize("name, f, x", SUPPORTED, ids=[case[0] for case in SUPPORTED])
def test_second_derivatives_are_gluons(name, f, x):
    dx, d2x = second_order(f, x)
    np.testing.assert_allclose(dx.reshape(-1), RECORDED[name]["dx"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d2x.reshape(-1), RECORDED[name]["d2x"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, f, x", CASES, ids=[case[0] for case in CASES])
def test_second_derivatives_match_finite_differences_of_the_first(name, f, x):
    _, d2x = second_order(f, x, np.float64)
    head = head_for(x.shape).astype(np.float64)

    def weighted_first_derivative(values):
        v = nd.array(values, dtype=np.float64)
        v.attach_grad()
        with autograd.record():
            y = f(nd, v)
        y.backward()
        return float(np.sum(head * v.grad.asnumpy()))

    numeric = np.zeros_like(d2x)
    base = x.astype(np.float64)
    for index in np.ndindex(x.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += 1e-6
        minus[index] -= 1e-6
        numeric[index] = (weighted_first_derivative(plus) - weighted_first_derivative(minus)) / 2e-6
    np.testing.assert_allclose(d2x, numeric, rtol=1e-5, atol=1e-6)


def test_a_gradient_penalty_trains_through_the_first_derivative():
    w = nd.array([0.5, -2.0])
    w.attach_grad()
    with autograd.record():
        (dw,) = autograd.grad(nd.sum(nd.square(w) * w), [w], create_graph=True)
        penalty = nd.mean(nd.square(dw))  # mean((3 w^2)^2)
    penalty.backward()
    np.testing.assert_allclose(w.grad.asnumpy(), 18 * w.asnumpy() ** 3, rtol=1e-6)


def test_an_op_without_a_second_derivative_is_named():
    x = nd.ones((2, 2))
    x.attach_grad()
    with autograd.record():
        y = nd.dot(x, x)
    with pytest.raises(NotImplementedError, match="the gradient of dot cannot be differentiated"):
        autograd.grad(y, [x], create_graph=True)


def test_create_graph_keeps_the_graph_for_another_backward():
    x = nd.array([2.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
        autograd.grad(y, [x], create_graph=True)
    y.backward()
    assert x.grad.asnumpy().tolist() == [4.0]


# ---- mark_variables --------------------------------------------------------------------------
def test_mark_variables_writes_gradients_into_the_given_arrays():
    x, gx = nd.array([1.0, 2.0]), nd.zeros((2,))
    autograd.mark_variables([x], [gx])
    with autograd.record():
        y = x * x
    y.backward()
    assert gx.asnumpy().tolist() == [2.0, 4.0] and x.grad.asnumpy().tolist() == [2.0, 4.0]


def test_mark_variables_with_add_accumulates():
    x, gx = nd.array([1.0]), nd.ones((1,))
    autograd.mark_variables(x, gx, grad_reqs="add")
    for _ in range(2):
        with autograd.record():
            y = x * 3
        y.backward()
    assert gx.asnumpy().tolist() == [7.0]


def test_mark_variables_refuses_mismatched_lists_and_shapes():
    with pytest.raises(ValueError, match="got 2 variables, 1 gradients"):
        autograd.mark_variables([nd.ones(1), nd.ones(1)], [nd.ones(1)])
    with pytest.raises(ValueError, match="gradient of shape \\(2,\\) for a variable of shape"):
        autograd.mark_variables([nd.ones(1)], [nd.ones(2)])


# ---- autograd.Function -----------------------------------------------------------------------
class StraightThroughSign(autograd.Function):
    """sign(x) forward, the identity backward within [-1, 1]: a straight-through estimator."""

    def forward(self, x):
        self.save_for_backward(x)
        return nd.sign(x)

    def backward(self, dy):
        (x,) = self.saved_tensors
        return dy * (nd.abs(x) <= 1)


def test_a_function_uses_its_own_backward():
    x = nd.array([0.5, -0.2, 3.0])
    x.attach_grad()
    with autograd.record():
        y = StraightThroughSign()(x) * 2
    y.backward()
    assert y.asnumpy().tolist() == [2.0, -2.0, 2.0]
    assert x.grad.asnumpy().tolist() == [2.0, 2.0, 0.0]


class SplitSum(autograd.Function):
    """Two outputs of two inputs: (a + b, a * b)."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a + b, a * b

    def backward(self, d_sum, d_product):
        a, b = self.saved_tensors
        return d_sum + d_product * b, d_sum + d_product * a


def test_a_function_with_several_outputs_sends_each_its_share():
    a, b = nd.array([2.0]), nd.array([5.0])
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        total, product = SplitSum()(a, b)
        loss = total * 3 + product
    loss.backward()
    assert (a.grad.asnumpy().tolist(), b.grad.asnumpy().tolist()) == ([8.0], [5.0])


def test_a_function_returning_the_wrong_number_of_gradients_is_named():
    class Broken(StraightThroughSign):
        def backward(self, dy):
            return dy, dy

    x = nd.ones((1,))
    x.attach_grad()
    with autograd.record():
        y = Broken()(x)
    with pytest.raises(Exception, match="Broken.backward returned 2 gradients for 1 inputs"):
        y.backward()
