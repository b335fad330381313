"""Layers and Block utilities: Dense math, BatchNorm, LayerNorm, Dropout, Embedding, Flatten,
hooks, apply, cast, and a custom block that trains (spec 8, e09, e11, e12)."""

import numpy as np
import pytest

from paramstore import autograd, gluon, init, nd
from paramstore.gluon import nn

pytestmark = pytest.mark.usefixtures("fresh_names")


def test_dense_computes_x_w_transposed_plus_b():
    dense = nn.Dense(2, in_units=3)
    dense.initialize()
    dense.weight.set_data(nd.array([[1, 2, 3], [4, 5, 6]]))
    dense.bias.set_data(nd.array([0.5, -0.5]))
    assert dense(nd.array([[1, 0, 1]])).asnumpy().tolist() == [[4.5, 9.5]]


def test_dense_activation_hooks_still_run():
    dense = nn.Dense(2, activation="relu", in_units=2)
    dense.initialize(init.One())
    seen = []
    dense.act.register_forward_hook(lambda block, inputs, out: seen.append(out.shape))
    assert dense(nd.array([[1, -3]])).asnumpy().tolist() == [[0.0, 0.0]]
    assert seen == [(1, 2)]


def test_forward_hooks_see_inputs_and_output_and_detach():
    dense = nn.Dense(4, in_units=3)
    dense.initialize()
    seen = []
    handle = dense.register_forward_hook(
        lambda block, inputs, out: seen.append((block.name, [x.shape for x in inputs], out.shape)))
    pre = dense.register_forward_pre_hook(lambda block, inputs: seen.append("pre"))
    dense(nd.ones((5, 3)))
    handle.detach()
    pre.detach()
    dense(nd.ones((5, 3)))
    assert seen == ["pre", ("dense0", [(5, 3)], (5, 4))]


def test_apply_visits_children_before_parents():
    net = nn.Sequential()
    net.add(nn.Dense(2, activation="relu"), nn.Dense(2))
    visited = []
    net.apply(lambda block: visited.append(block.name))
    assert visited == ["dense0_relu", "dense0", "dense1", "sequential0"]


def test_cast_changes_the_forward_dtype():
    net = nn.Sequential()
    net.add(nn.Dense(2, in_units=2))
    net.initialize()
    net.cast("float64")
    assert net(nd.ones((1, 2), dtype=np.float64)).dtype == np.float64


def test_hybridize_changes_neither_names_nor_results():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Dense(2))
    net.initialize()
    before = net(nd.ones((1, 3))).asnumpy()
    net.hybridize()
    np.testing.assert_array_equal(net(nd.ones((1, 3))).asnumpy(), before)
    assert list(net.collect_params().keys()) == [
        "hybridsequential0_dense0_weight", "hybridsequential0_dense0_bias"]


def batchnorm():
    bn = nn.BatchNorm(in_channels=2)
    bn.initialize()
    return bn, nd.array([[1.0, 10.0], [3.0, 30.0]])


def test_batchnorm_predicts_with_running_statistics():
    bn, x = batchnorm()
    np.testing.assert_allclose(bn(x).asnumpy(), [[1.0, 10.0], [3.0, 29.99985]], rtol=1e-5)


def test_batchnorm_trains_with_batch_statistics_and_updates_them_on_backward():
    bn, x = batchnorm()
    with autograd.record():
        y = bn(x)
    np.testing.assert_allclose(y.asnumpy(), [[-1.0, -1.0], [1.0, 1.0]], atol=1e-4)
    assert bn.running_mean.data().asnumpy().tolist() == [0.0, 0.0]
    y.backward()
    np.testing.assert_allclose(bn.running_mean.data().asnumpy(), [0.2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.data().asnumpy(), [1.0, 10.9], rtol=1e-6)


def test_batchnorm_running_statistics_have_no_gradient():
    bn, _ = batchnorm()
    assert (bn.running_mean.grad_req, bn.running_var.grad_req) == ("null", "null")
    assert (bn.gamma.init, bn.beta.init) == ("ones", "zeros")


def test_layernorm_normalizes_each_sample():
    ln = nn.LayerNorm()
    ln.initialize()
    out = ln(nd.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])).asnumpy()
    np.testing.assert_allclose(out.mean(axis=1), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out.std(axis=1), [1.0, 1.0], rtol=1e-4)
    assert ln.gamma.shape == (3,)


def test_dropout_is_the_identity_when_predicting_and_scales_when_training():
    drop = nn.Dropout(0.25)
    x = nd.ones((1, 400))
    assert drop(x).asnumpy().tolist() == x.asnumpy().tolist()
    with autograd.record():
        out = drop(x).asnumpy()
    kept = out[out != 0]
    np.testing.assert_allclose(kept, 1 / 0.75, rtol=1e-6)
    assert 0 < kept.size < 400


def test_embedding_looks_up_rows():
    embedding = nn.Embedding(4, 2)
    embedding.initialize()
    embedding.weight.set_data(nd.array([[0, 0], [1, 1], [2, 2], [3, 3]]))
    assert embedding(nd.array([3, 1])).asnumpy().tolist() == [[3.0, 3.0], [1.0, 1.0]]


def test_flatten_folds_trailing_axes():
    assert nn.Flatten()(nd.ones((2, 3, 4))).shape == (2, 12)


def test_a_custom_block_written_with_nd_functions_trains():
    class FancyMLP(gluon.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.rand_weight = self.params.get_constant(
                "rand_weight", np.random.default_rng(0).uniform(size=(4, 4)))
            self.dense = nn.Dense(4, activation="relu")

        def forward(self, x):
            x = self.dense(x)
            x = nd.relu(nd.dot(x, self.rand_weight.data()) + 1)
            return self.dense(x).sum(axis=1)

    net = FancyMLP()
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})
    x = nd.array(np.random.default_rng(1).uniform(size=(8, 4)))
    y = nd.ones((8,))
    loss = gluon.loss.L2Loss()
    losses = []
    for _ in range(20):
        with autograd.record():
            value = loss(net(x), y)
        value.backward()
        trainer.step(8)
        losses.append(value.mean().asscalar())
    assert losses[-1] < losses[0]
    assert [type(p).__name__ for p in net.collect_params().values()] == [
        "Constant", "Parameter", "Parameter"]
