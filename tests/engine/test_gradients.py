"""Every operator's gradient against finite differences, and autograd's semantics (spec 6.1).

The array operators' cases live in `oracle/array_cases.py` (checked in `test_array_ops.py`);
the guard below counts them too.
"""

import inspect

import numpy as np
import pytest
from gradcheck import check_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle.array_cases import CASES as ARRAY_CASES

from paramstore import autograd, nd
from paramstore.base import EngineError
from paramstore.nd import activations, array_ops, conv, ctc, normalization, ops

rng = np.random.default_rng(42)


def rand(*shape: int) -> np.ndarray:
    """Values in ±[0.5, 1.5]: away from the kinks of relu, abs, max and the poles of log."""
    return rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


def positive(*shape: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def distinct(*shape: int) -> np.ndarray:
    """Values without ties, so max and min have one winner each."""
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 3


# One line per operator: (name, function of NDArrays, inputs).
CASES = [
    ("add", lambda a, b: nd.add(a, b), (rand(2, 3), rand(2, 3))),
    ("add broadcast", lambda a, b: a + b, (rand(2, 3), rand(1, 3))),
    ("add scalar", lambda a: 2.0 + a, (rand(2, 3),)),
    ("subtract broadcast", lambda a, b: nd.subtract(a, b), (rand(4, 1, 3), rand(2, 1))),
    ("rsub scalar", lambda a: 1.0 - a, (rand(3),)),
    ("multiply broadcast", lambda a, b: nd.multiply(a, b), (rand(2, 3), rand(3))),
    ("divide broadcast", lambda a, b: nd.divide(a, b), (rand(2, 3), positive(2, 1))),
    ("rdiv scalar", lambda a: 1.0 / a, (positive(3),)),
    ("power", lambda a, b: nd.power(a, b), (positive(2, 3), rand(2, 3))),
    ("maximum", lambda a, b: nd.maximum(a, b), (rand(2, 3), rand(2, 3))),
    ("minimum broadcast", lambda a, b: nd.minimum(a, b), (rand(2, 3), rand(1, 3))),
    ("negative", lambda a: nd.negative(a), (rand(2, 3),)),
    ("abs", lambda a: nd.abs(a), (rand(2, 3),)),
    ("exp", lambda a: nd.exp(a), (rand(2, 3),)),
    ("log", lambda a: nd.log(a), (positive(2, 3),)),
    ("sqrt", lambda a: nd.sqrt(a), (positive(2, 3),)),
    ("square", lambda a: nd.square(a), (rand(2, 3),)),
    ("relu", lambda a: nd.relu(a), (rand(2, 3),)),
    ("sigmoid", lambda a: nd.sigmoid(a), (rand(2, 3),)),
    ("tanh", lambda a: nd.tanh(a), (rand(2, 3),)),
    ("softrelu", lambda a: nd.softrelu(a), (rand(2, 3),)),
    ("sign", lambda a: nd.sign(a), (rand(2, 3),)),
    ("Activation", lambda a: nd.Activation(a, act_type="tanh"), (rand(2, 3),)),
    ("clip", lambda a: nd.clip(a, -1.0, 1.0), (rand(3, 4),)),
    ("sum all", lambda a: nd.sum(a), (rand(2, 3),)),
    ("sum axis", lambda a: nd.sum(a, axis=1), (rand(2, 3, 4),)),
    ("sum axes keepdims", lambda a: nd.sum(a, axis=(0, 2), keepdims=True), (rand(2, 3, 4),)),
    ("mean axis", lambda a: nd.mean(a, axis=-1), (rand(2, 3, 4),)),
    ("mean all", lambda a: nd.mean(a), (rand(2, 3),)),
    ("max axis", lambda a: nd.max(a, axis=1), (distinct(2, 3, 4),)),
    ("min all", lambda a: nd.min(a), (distinct(2, 3),)),
    ("norm", lambda a: nd.norm(a), (rand(2, 3),)),
    ("reshape", lambda a: nd.reshape(a, (3, -1)), (rand(2, 3, 2),)),
    ("reshape keeps dim 0", lambda a: a.reshape((0, -1)), (rand(2, 3, 2),)),
    ("flatten", lambda a: nd.flatten(a), (rand(2, 3, 2),)),
    ("transpose", lambda a: nd.transpose(a), (rand(2, 3),)),
    ("transpose axes", lambda a: nd.transpose(a, axes=(1, 2, 0)), (rand(2, 3, 4),)),
    ("T", lambda a: a.T, (rand(2, 3),)),
    ("expand_dims", lambda a: nd.expand_dims(a, 1), (rand(2, 3),)),
    ("broadcast_to", lambda a: nd.broadcast_to(a, (2, 4, 3)), (rand(1, 4, 1),)),
    ("concat", lambda a, b: nd.concat(a, b, dim=1), (rand(2, 3), rand(2, 2))),
    ("concat dim 0", lambda a, b, c: nd.concat(a, b, c, dim=0),
     (rand(1, 3), rand(2, 3), rand(1, 3))),
    ("stack", lambda a, b: nd.stack(a, b, axis=1), (rand(2, 3), rand(2, 3))),
    ("dot", lambda a, b: nd.dot(a, b), (rand(2, 3), rand(3, 4))),
    ("dot transpose_a", lambda a, b: nd.dot(a, b, transpose_a=True), (rand(3, 2), rand(3, 4))),
    ("dot transpose_b", lambda a, b: nd.dot(a, b, transpose_b=True), (rand(2, 3), rand(4, 3))),
    ("dot both transposed", lambda a, b: nd.dot(a, b, True, True), (rand(3, 2), rand(4, 3))),
    ("dot vectors", lambda a, b: nd.dot(a, b), (rand(3), rand(3))),
    ("dot matrix vector", lambda a, b: nd.dot(a, b), (rand(2, 3), rand(3))),
    ("FullyConnected", lambda x, w, b: nd.FullyConnected(x, w, b, num_hidden=4),
     (rand(2, 3), rand(4, 3), rand(4))),
    ("FullyConnected no bias", lambda x, w: nd.FullyConnected(x, w, no_bias=True, num_hidden=4),
     (rand(2, 3), rand(4, 3))),
    ("FullyConnected flatten", lambda x, w, b: nd.FullyConnected(x, w, b, num_hidden=2),
     (rand(2, 3, 2), rand(2, 6), rand(2))),
    ("FullyConnected flatten=False", lambda x, w, b: nd.FullyConnected(x, w, b, flatten=False),
     (rand(2, 3, 4), rand(5, 4), rand(5))),
    ("dense relu", lambda x, w, b: nd.dense(x, w, b, act_type="relu"),
     (rand(3, 4), rand(5, 4), rand(5))),
    ("dense sigmoid no bias", lambda x, w: nd.dense(x, w, None, act_type="sigmoid"),
     (rand(3, 4), rand(5, 4))),
    ("dense tanh", lambda x, w, b: nd.dense(x, w, b, act_type="tanh"),
     (rand(3, 4), rand(2, 4), rand(2))),
    ("dense softrelu", lambda x, w, b: nd.dense(x, w, b, act_type="softrelu"),
     (rand(3, 4), rand(2, 4), rand(2))),
    ("softmax", lambda a: nd.softmax(a), (rand(2, 4),)),
    ("softmax axis 0", lambda a: nd.softmax(a, axis=0), (rand(3, 2),)),
    ("log_softmax", lambda a: nd.log_softmax(a), (rand(2, 4),)),
    ("log_softmax axis 0", lambda a: nd.log_softmax(a, axis=0), (rand(3, 2),)),
    ("pick", lambda a, i: nd.pick(a, i), (rand(3, 4), np.array([0.0, 3.0, 1.0]))),
    ("pick axis 0 keepdims", lambda a, i: nd.pick(a, i, axis=0, keepdims=True),
     (rand(3, 2), np.array([2.0, 0.0]))),
    ("sparse_softmax_cross_entropy", lambda a, i: nd.sparse_softmax_cross_entropy(a, i),
     (rand(3, 4), np.array([0.0, 3.7, 9.0]))),
    ("sparse_softmax_cross_entropy axis 1 keepdims",
     lambda a, i: nd.sparse_softmax_cross_entropy(a, i, axis=1, keepdims=True),
     (rand(2, 3, 2), np.array([[0.0, 2.0], [1.0, 1.0]]))),
    ("Embedding", lambda i, w: nd.Embedding(i, w, input_dim=4, output_dim=3),
     (np.array([[0.0, 2.0], [2.0, 3.0]]), rand(4, 3))),
    ("where", lambda c, x, y: nd.where(c, x, y),
     (np.array([[1.0, 0.0], [0.0, 1.0]]), rand(2, 2), rand(2, 2))),
    ("getitem int", lambda a: a[1], (rand(3, 4),)),
    ("getitem slice", lambda a: a[:, 1:3], (rand(3, 4),)),
    ("getitem int and slice", lambda a: a[2, ::2], (rand(3, 4),)),
    ("getitem full integer index", lambda a: a[1, 2], (rand(3, 4),)),
    ("softsign", lambda a: nd.softsign(a), (rand(2, 3),)),
    ("Activation softsign", lambda a: nd.Activation(a, act_type="softsign"), (rand(2, 3),)),
    # convolution, pooling, padding
    ("Convolution 1d", lambda x, w, b: nd.Convolution(x, w, b, kernel=(3,), num_filter=2),
     (rand(2, 3, 6), rand(2, 3, 3), rand(2))),
    ("Convolution 2d strided padded dilated grouped",
     lambda x, w: nd.Convolution(x, w, kernel=(2, 3), stride=(2, 1), pad=(1, 2), dilate=(1, 2),
                                 num_filter=4, num_group=2, no_bias=True),
     (rand(1, 4, 5, 4), rand(4, 2, 2, 3))),
    ("Convolution 3d", lambda x, w, b: nd.Convolution(x, w, b, kernel=(2, 2, 2), stride=2),
     (rand(1, 2, 3, 4, 3), rand(2, 2, 2, 2, 2), rand(2))),
    ("Convolution fused relu",
     lambda x, w, b: nd.Convolution(x, w, b, kernel=(2,), act_type="relu"),
     (rand(2, 2, 5), rand(3, 2, 2), rand(3))),
    ("Deconvolution fused tanh", lambda x, w: nd.Deconvolution(
        x, w, kernel=(2, 2), stride=(2, 1), no_bias=True, act_type="tanh"),
     (rand(1, 2, 2, 3), rand(2, 2, 2, 2))),
    ("Convolution NHWC", lambda x, w, b: nd.Convolution(x, w, b, kernel=(2, 2), layout="NHWC"),
     (rand(1, 3, 4, 2), rand(3, 2, 2, 2), rand(3))),
    ("Deconvolution", lambda x, w, b: nd.Deconvolution(
        x, w, b, kernel=(3, 2), stride=(2, 2), pad=(1, 0), adj=(1, 1), num_group=2),
     (rand(1, 4, 3, 3), rand(4, 1, 3, 2), rand(2))),
    ("Deconvolution 1d dilated", lambda x, w: nd.Deconvolution(
        x, w, kernel=(2,), dilate=(2,), no_bias=True), (rand(2, 2, 4), rand(2, 3, 2))),
    ("Pooling max ceil padded", lambda x: nd.Pooling(
        x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pooling_convention="full"),
     (distinct(1, 2, 6, 5),)),
    ("Pooling avg exclude pad", lambda x: nd.Pooling(
        x, kernel=(2, 2), pool_type="avg", pad=(1, 1), stride=(2, 2), count_include_pad=False),
     (rand(1, 2, 4, 5),)),
    ("Pooling sum 1d", lambda x: nd.Pooling(x, kernel=(2,), pool_type="sum", stride=(1,)),
     (rand(2, 2, 5),)),
    ("Pooling global avg 3d", lambda x: nd.Pooling(x, global_pool=True, pool_type="avg"),
     (rand(1, 2, 2, 3, 2),)),
    ("pad reflect", lambda x: nd.pad(x, mode="reflect", pad_width=(0, 0, 0, 0, 2, 1, 1, 2)),
     (rand(1, 2, 3, 4),)),
    ("pad edge", lambda x: nd.pad(x, mode="edge", pad_width=(0, 0, 0, 0, 1, 1, 0, 2)),
     (rand(2, 1, 2, 3),)),
    ("pad constant 5d", lambda x: nd.pad(
        x, mode="constant", pad_width=(0, 0, 0, 0, 1, 0, 0, 1, 2, 0), constant_value=3.0),
     (rand(1, 1, 2, 2, 2),)),
    # activations and normalizations
    ("LeakyReLU leaky", lambda x: nd.LeakyReLU(x, act_type="leaky", slope=0.1), (rand(2, 3),)),
    ("LeakyReLU elu", lambda x: nd.LeakyReLU(x, act_type="elu", slope=0.7), (rand(2, 3),)),
    ("LeakyReLU selu", lambda x: nd.LeakyReLU(x, act_type="selu"), (rand(2, 3),)),
    ("LeakyReLU gelu", lambda x: nd.LeakyReLU(x, act_type="gelu"), (rand(2, 3),)),
    ("LeakyReLU prelu", lambda x, g: nd.LeakyReLU(x, g, act_type="prelu"),
     (rand(2, 3, 2), rand(3))),
    ("LeakyReLU prelu shared", lambda x, g: nd.LeakyReLU(x, g, act_type="prelu"),
     (rand(2, 3), rand(1))),
    ("InstanceNorm", lambda x, g, b: nd.InstanceNorm(x, g, b, eps=1e-3),
     (rand(2, 3, 4), rand(3), rand(3))),
    ("GroupNorm", lambda x, g, b: nd.GroupNorm(x, g, b, num_groups=2),
     (rand(2, 4, 3), rand(2), rand(2))),
]

# Inputs that are indices or conditions, not differentiated.
NOT_DIFFERENTIATED = {
    "pick": [0], "pick axis 0 keepdims": [0], "Embedding": [1], "where": [1, 2],
    "sparse_softmax_cross_entropy": [0], "sparse_softmax_cross_entropy axis 1 keepdims": [0],
}


@pytest.mark.parametrize("name, f, inputs", CASES, ids=[case[0] for case in CASES])
def test_gradient_matches_finite_differences(name, f, inputs):
    check_gradient(f, *inputs, wrt=NOT_DIFFERENTIATED.get(name))


# Functions of nd.ops checked elsewhere in this file, or not differentiable at all.
CHECKED_SEPARATELY = {"Dropout"}
NOT_DIFFERENTIABLE = {"argmax", "one_hot", "argsort", "broadcast_equal", "broadcast_not_equal",
                      "broadcast_greater", "broadcast_greater_equal", "broadcast_lesser",
                      "broadcast_lesser_equal"}
ALIASES = {"broadcast_add", "broadcast_sub", "broadcast_mul", "broadcast_div", "elemwise_add",
           "elemwise_sub", "elemwise_mul", "elemwise_div", "Flatten", "broadcast_axes", "equal",
           "not_equal", "greater", "greater_equal", "lesser", "lesser_equal", "CTCLoss"}


@pytest.mark.parametrize("module", [ops, conv, activations, normalization, array_ops, ctc])
def test_every_operator_in_ops_has_a_gradient_check(module):
    public = {
        name for name, value in vars(module).items()
        if callable(value) and not name.startswith("_") and not inspect.isclass(value)
        and getattr(value, "__module__", None) == module.__name__
    }
    checked = {name.split(" ")[0] for name, _, _ in CASES}
    checked |= {name.split(" ")[0] for name, _, _, wrt in ARRAY_CASES if wrt}
    missing = public - checked - CHECKED_SEPARATELY - NOT_DIFFERENTIABLE - ALIASES
    assert not missing


@given(
    shapes=st.sampled_from([((2, 3), (3,)), ((2, 3), (2, 1)), ((4, 1, 3), (2, 1)), ((3,), (1,))]),
    op=st.sampled_from([nd.add, nd.subtract, nd.multiply, nd.maximum]),
)
@settings(max_examples=20, deadline=None)
def test_broadcasting_binary_ops_send_gradients_of_each_input_shape(shapes, op):
    a, b = rand(*shapes[0]), rand(*shapes[1])
    check_gradient(op, a, b)


# ---- Dropout ---------------------------------------------------------------------------------
def test_dropout_gradient_is_its_mask_scaled_by_one_over_keep_probability():
    x = nd.ones((50, 40))
    x.attach_grad()
    with autograd.record():
        y = nd.Dropout(x, p=0.25)
    y.backward()
    kept = y.asnumpy() != 0
    np.testing.assert_allclose(x.grad.asnumpy(), kept / 0.75, rtol=1e-6)
    assert 0.6 < kept.mean() < 0.9


def test_dropout_outside_training_is_the_identity_and_passes_gradients_through():
    x = nd.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record(train_mode=False):
        y = nd.Dropout(x, p=0.5) * 3
    y.backward()
    assert y.asnumpy().tolist() == [3.0, 6.0]
    assert x.grad.asnumpy().tolist() == [3.0, 3.0]


# ---- autograd semantics (spec 6.1) -----------------------------------------------------------
def square_backward(x: nd.NDArray) -> None:
    with autograd.record():
        y = x * x
    y.backward()


def test_grad_req_write_overwrites_on_each_backward():
    x = nd.array([1.0, 2.0])
    x.attach_grad(grad_req="write")
    square_backward(x)
    square_backward(x)
    assert x.grad.asnumpy().tolist() == [2.0, 4.0]


def test_grad_req_add_accumulates_over_backwards():
    x = nd.array([1.0, 2.0])
    x.attach_grad(grad_req="add")
    square_backward(x)
    square_backward(x)
    assert x.grad.asnumpy().tolist() == [4.0, 8.0]


def test_second_backward_without_retain_graph_fails_with_gluons_message():
    x = nd.array([1.0, 2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
    y.backward()
    with pytest.raises(EngineError, match="you need to pass retain_graph=True to backward.$"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = nd.array([1.0, 2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.asnumpy().tolist() == [2.0, 4.0, 6.0]


def test_backward_of_an_unrecorded_result_fails():
    x = nd.array([1.0])
    x.attach_grad()
    y = x * 2
    with pytest.raises(EngineError, match="^Cannot differentiate node because it is not in a"):
        y.backward()


def test_operations_under_pause_are_constants():
    a = nd.array([1.0, 1.0, 1.0])
    a.attach_grad()
    with autograd.record():
        y = a * 2
        with autograd.pause():
            z = a * 5
        total = y + z
    total.backward()
    assert a.grad.asnumpy().tolist() == [2.0, 2.0, 2.0]


def test_detach_cuts_the_tape():
    x = nd.array([1.0, 2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
        z = y.detach() * x
    z.backward()
    assert x.grad.asnumpy().tolist() == [1.0, 4.0, 9.0]


def test_autograd_grad_returns_gradients_without_touching_buffers():
    x = nd.array([[1.0, 2.0]])
    x.attach_grad()
    with autograd.record():
        y = x * x * x
    (dx,) = autograd.grad(y, [x])
    assert dx.asnumpy().tolist() == [[3.0, 12.0]]
    assert x.grad.asnumpy().tolist() == [[0.0, 0.0]]


def test_backward_of_several_heads_sums_their_gradients():
    x = nd.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y1 = x * x
        y2 = x * 3
    autograd.backward([y1, y2])
    assert x.grad.asnumpy().tolist() == [5.0, 7.0]


def test_a_variable_used_twice_gets_the_sum_of_both_contributions():
    w = nd.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float64)
    x = nd.array([[0.5, -1.0]], dtype=np.float64)
    w.attach_grad()
    with autograd.record():
        h = nd.dot(x, w, transpose_b=True)
        y = nd.dot(h, w, transpose_b=True)
        loss = nd.sum(y * y)
    loss.backward()
    dy = 2 * y.asnumpy()
    expected = dy.T @ h.asnumpy() + (dy @ w.asnumpy()).T @ x.asnumpy()
    np.testing.assert_allclose(w.grad.asnumpy(), expected)


def test_non_scalar_head_gets_an_implicit_gradient_of_ones():
    x = nd.array([1.0, 2.0, 3.0])
    x.attach_grad()
    square_backward(x)
    assert x.grad.asnumpy().tolist() == [2.0, 4.0, 6.0]


def test_out_grad_weights_each_element_of_the_head():
    x = nd.array([1.0, 2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
    y.backward(nd.array([1.0, 0.0, 10.0]))
    assert x.grad.asnumpy().tolist() == [2.0, 0.0, 60.0]


def test_sparse_softmax_cross_entropy_equals_minus_pick_of_log_softmax():
    logits = nd.array(rand(4, 5))
    labels = nd.array([0.0, 4.0, 2.9, 7.0])  # truncated and clipped like pick
    fused = nd.sparse_softmax_cross_entropy(logits, labels)
    composed = -nd.pick(nd.log_softmax(logits), labels)
    np.testing.assert_allclose(fused.asnumpy(), composed.asnumpy(), rtol=1e-6)
