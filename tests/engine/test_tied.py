"""Tied parameters: one Parameter object in several layers (spec 5; raw output e06)."""

import numpy as np
import pytest

from paramstore import autograd, gluon, init, nd
from paramstore.gluon import nn

pytestmark = pytest.mark.usefixtures("fresh_names")


def tied_net():
    shared = nn.Dense(8, activation="relu")
    net = nn.Sequential()
    net.add(nn.Dense(8, activation="relu"), shared,
            nn.Dense(8, activation="relu", params=shared.params), nn.Dense(10))
    net.initialize()
    net(nd.random.uniform(shape=(2, 20)))
    return net


def test_the_chapters_tied_net_names_and_shapes():
    net = tied_net()
    assert [b.name for b in net.children()] == ["dense1", "dense0", "dense2", "dense3"]
    assert [b.params.prefix for b in net.children()] == ["dense1_", "dense0_", "dense0_",
                                                        "dense3_"]
    assert [(k, p.shape) for k, p in net.collect_params().items()] == [
        ("dense1_weight", (8, 20)), ("dense1_bias", (8,)), ("dense0_weight", (8, 8)),
        ("dense0_bias", (8,)), ("dense3_weight", (10, 8)), ("dense3_bias", (10,)),
    ]
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Dense(20 -> 8, Activation(relu))\n"
        "  (1): Dense(8 -> 8, Activation(relu))\n"
        "  (2): Dense(8 -> 8, Activation(relu))\n"
        "  (3): Dense(8 -> 10, linear)\n"
        ")"
    )


def test_tied_layers_hold_one_parameter_object_and_one_gradient_buffer():
    net = tied_net()
    assert net[1].weight is net[2].weight
    assert net[1].weight.grad() is net[2].weight.grad()


def test_the_gradient_of_a_tied_weight_is_the_sum_of_both_uses():
    dense = nn.Dense(3, in_units=3)
    dense.initialize(init.Normal(0.5))
    dense.cast("float64")
    x = nd.array(np.random.default_rng(0).normal(size=(2, 3)), dtype=np.float64)

    def loss():
        return (dense(dense(x)) ** 2).sum()

    with autograd.record():
        y = loss()
    y.backward()
    weight = dense.weight.data()
    expected = np.zeros(weight.shape)
    for index in np.ndindex(*weight.shape):
        original = weight[index].asscalar()
        weight[index] = original + 1e-6
        above = loss().asscalar()
        weight[index] = original - 1e-6
        below = loss().asscalar()
        weight[index] = original
        expected[index] = (above - below) / 2e-6
    np.testing.assert_allclose(dense.weight.grad().asnumpy(), expected, rtol=1e-5, atol=1e-7)


def test_grad_req_add_on_a_tied_weight_adds_the_summed_contributions():
    dense = nn.Dense(2, in_units=2, use_bias=False)
    dense.initialize(init.One())
    dense.weight.grad_req = "add"
    x = nd.ones((1, 2))
    for expected in (4.0, 8.0):
        with autograd.record():
            y = dense(dense(x)).sum()
        y.backward()
        assert dense.weight.grad().asnumpy().tolist() == [[expected] * 2] * 2


def test_a_tied_deferred_weight_takes_the_shape_of_its_first_use():
    shared = nn.Dense(3)
    net = nn.Sequential()
    net.add(shared, nn.Dense(3, params=shared.params))
    net.initialize()
    assert net(nd.ones((2, 3))).shape == (2, 3)
    assert shared.weight.shape == (3, 3)


def test_training_a_tied_mlp_lowers_the_loss_and_updates_the_shared_weight_once():
    net = tied_net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(1)
    x = nd.array(rng.uniform(size=(16, 20)))
    y = nd.array(rng.integers(0, 10, 16))
    losses = []
    for _ in range(30):
        with autograd.record():
            value = loss(net(x), y)
        value.backward()
        before = net[1].weight.data().asnumpy()
        grad = net[1].weight.grad().asnumpy()
        trainer.step(16)
        np.testing.assert_allclose(net[2].weight.data().asnumpy(), before - 0.5 * grad / 16,
                                   rtol=1e-5, atol=1e-6)
        losses.append(value.mean().asscalar())
    assert losses[-1] < losses[0]
