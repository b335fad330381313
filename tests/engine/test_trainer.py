"""gluon.Trainer: Gluon's step semantics (spec 6.2, raw outputs e07/e07b), KVStores, training."""

import numpy as np
import pytest

import paramstore
from paramstore import autograd, gluon, init, kvstore, nd, optimizer
from paramstore.gluon import nn
from paramstore.gluon.parameter import DeferredInitializationError


def backward_through(block, x, scale=1.0):
    with autograd.record():
        out = (block(nd.array(x)) * scale).sum()
    out.backward()


def scalar_dense(prefix, value, **trainer_params):
    """A 1 -> 1 Dense without bias whose weight starts at `value`, and its SGD trainer."""
    dense = nn.Dense(1, in_units=1, use_bias=False, prefix=prefix)
    dense.initialize(init.Constant(value))
    return dense, gluon.Trainer(dense.collect_params(), "sgd", trainer_params)


@pytest.fixture
def lin():
    """The spec's linear model: weight [[1, 1]], bias [0.5], loss L2 on three samples."""
    net = nn.Dense(1, in_units=2, prefix="lin_")
    net.initialize(init.Constant(1.0))
    net.bias.set_data(nd.array([0.5]))
    return net


def l2_backward(net):
    X = nd.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    Y = nd.array([[1.0], [2.0], [3.0]])
    with autograd.record():
        l = gluon.loss.L2Loss()(net(X), Y)
    l.backward()
    return l


# ---- construction ----------------------------------------------------------------------------
def test_parameters_of_a_dict_are_taken_in_sorted_key_order(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd")
    assert [p.name for p in trainer._params] == ["lin_bias", "lin_weight"]


def test_learning_rate_and_defaults_come_from_the_optimizer(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", {"learning_rate": 0.1})
    assert trainer.learning_rate == 0.1
    assert type(trainer.optimizer).__name__ == "SGD"
    assert trainer.optimizer.rescale_grad == 1.0


def test_unknown_optimizer_is_refused(lin):
    with pytest.raises(ValueError, match="^Cannot find optimizer nosuchopt$"):
        gluon.Trainer(lin.collect_params(), "nosuchopt")


def test_wrong_optimizer_keyword_is_refused(lin):
    with pytest.raises(TypeError, match=r"__init__\(\) got an unexpected keyword argument 'lr'"):
        gluon.Trainer(lin.collect_params(), "sgd", {"lr": 0.1})


def test_a_single_parameter_is_not_a_parameter_list(lin):
    with pytest.raises(ValueError, match="^First argument must be a list or dict of Parameters"):
        gluon.Trainer(lin.weight, "sgd")


def test_an_uninitialized_parameter_is_refused():
    with pytest.raises(RuntimeError, match="^Parameter 'fresh_bias' has not been initialized"):
        gluon.Trainer(nn.Dense(2, prefix="fresh_").collect_params(), "sgd")


def test_an_optimizer_instance_is_used_as_given(lin):
    sgd = optimizer.create("sgd", learning_rate=0.3)
    assert gluon.Trainer(lin.collect_params(), sgd).optimizer is sgd


def test_an_optimizer_instance_with_optimizer_params_is_refused(lin):
    with pytest.raises(AssertionError, match="optimizer_params must be None"):
        gluon.Trainer(lin.collect_params(), optimizer.create("sgd"), {"learning_rate": 1.0})


def test_an_unknown_kvstore_type_is_refused(lin):
    with pytest.raises(ValueError, match="kvstore must be 'device', 'local', None, a registered"):
        gluon.Trainer(lin.collect_params(), "sgd", kvstore="dist_sync")


# ---- step ------------------------------------------------------------------------------------
def test_step_applies_the_mean_gradient_of_the_batch(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", {"learning_rate": 0.1})
    l = l2_backward(lin)
    assert l.asnumpy().tolist() == [3.125, 15.125, 36.125]
    assert lin.weight.grad().asnumpy().tolist() == [[61.5, 78.0]]
    trainer.step(batch_size=3)
    assert lin.weight.data().asnumpy().tolist() == [[-1.0500001907348633, -1.6000001430511475]]
    assert lin.bias.data().asnumpy().tolist() == [-0.050000011920928955]
    assert trainer.optimizer.rescale_grad == 1 / 3


def test_step_does_not_zero_the_gradients(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", {"learning_rate": 0.1})
    l2_backward(lin)
    trainer.step(3)
    assert lin.weight.grad().asnumpy().tolist() == [[61.5, 78.0]]


def test_step_without_a_new_backward_raises_the_stale_gradient_warning(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", {"learning_rate": 0.1})
    l2_backward(lin)
    trainer.step(3)
    with pytest.raises(UserWarning) as caught:
        trainer.step(3)
    assert str(caught.value) == (
        "Gradient of Parameter `lin_bias` on context cpu(0) has not been updated by backward "
        "since last `step`. This could mean a bug in your model that made it only use a subset "
        "of the Parameters (Blocks) for this iteration. If you are intentionally only using a "
        "subset, call step with ignore_stale_grad=True to suppress this warning and skip "
        "updating of Parameters with stale gradient"
    )


def test_ignore_stale_grad_skips_parameters_without_a_new_gradient(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", {"learning_rate": 0.1})
    l2_backward(lin)
    trainer.step(3)
    before = lin.weight.data().asnumpy()
    trainer.step(3, ignore_stale_grad=True)
    assert np.array_equal(lin.weight.data().asnumpy(), before)


def test_a_stale_step_changes_no_parameter():
    net = nn.Sequential()
    net.add(nn.Dense(1, in_units=1), nn.Dense(1, in_units=1))
    net.initialize(init.One())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
    backward_through(net[0], [[1.0]])  # only the first layer gets gradients
    before = [p.data().asnumpy() for p in net.collect_params().values()]
    with pytest.raises(UserWarning):
        trainer.step(1)
    assert all(np.array_equal(p.data().asnumpy(), b)
               for p, b in zip(net.collect_params().values(), before))


def test_set_learning_rate_changes_the_next_step():
    dense, trainer = scalar_dense("lr_", 0.0, learning_rate=1.0)
    trainer.set_learning_rate(0.5)
    backward_through(dense, [[1.0]])
    trainer.step(1)
    assert trainer.learning_rate == 0.5
    assert dense.weight.data().asscalar() == -0.5


def test_weight_decay_and_lr_mult_are_applied():
    dense, trainer = scalar_dense("wd_", 2.0, learning_rate=0.1, wd=0.5)
    backward_through(dense, [[1.0]])
    trainer.step(1)
    assert dense.weight.data().asscalar() == pytest.approx(1.8)
    dense.weight.lr_mult = 10.0
    backward_through(dense, [[1.0]])
    trainer.step(1)
    # lr 0.1 x lr_mult 10 = 1: 1.8 - 1 * (1 + 0.5 * 1.8)
    assert dense.weight.data().asscalar() == pytest.approx(-0.1, abs=1e-6)


def test_momentum_accumulates_across_steps():
    dense, trainer = scalar_dense("mom_", 0.0, learning_rate=1.0, momentum=0.9)
    seen = []
    for _ in range(3):
        backward_through(dense, [[1.0]])
        trainer.step(1)
        seen.append(round(float(dense.weight.data().asscalar()), 5))
    assert seen == [-1.0, -2.9, -5.61]


def test_rescale_grad_and_clip_gradient_apply_before_the_step():
    dense, trainer = scalar_dense("clip_", 0.0, learning_rate=1.0, clip_gradient=0.5,
                                  rescale_grad=2.0)
    backward_through(dense, [[1.0]], scale=10.0)
    trainer.step(4)
    assert dense.weight.data().asscalar() == -0.5


def test_a_grad_req_null_parameter_is_never_updated():
    dense = nn.Dense(1, in_units=1, prefix="nul_")
    dense.initialize(init.One())  # the weight; the bias keeps its own 'zeros'
    dense.bias.grad_req = "null"
    trainer = gluon.Trainer([dense.weight, dense.bias], "sgd", {"learning_rate": 1.0})
    backward_through(dense, [[1.0]])
    trainer.step(1)
    assert dense.weight.data().asscalar() == 0.0
    assert dense.bias.data().asscalar() == 0.0  # an update with lr 1 would have made it -1


def test_step_while_a_parameter_is_deferred_raises_deferred_initialization_error():
    dense = nn.Dense(2)
    dense.initialize()
    trainer = gluon.Trainer(dense.collect_params(), "sgd", {"learning_rate": 0.1})
    with pytest.raises(DeferredInitializationError):
        trainer.step(1)


def test_the_same_parameter_listed_twice_is_updated_once():
    dense, _ = scalar_dense("twice_", 1.0)
    trainer = gluon.Trainer([dense.weight, dense.weight], "sgd", {"learning_rate": 1.0})
    backward_through(dense, [[1.0]])
    trainer.step(1)
    assert dense.weight.data().asscalar() == 0.0


def test_a_tied_parameter_is_updated_once_with_the_sum_of_its_gradients():
    net = nn.Sequential()
    shared = nn.Dense(1, in_units=1, use_bias=False)
    net.add(shared, nn.Dense(1, in_units=1, use_bias=False, params=shared.params))
    net.initialize(init.Constant(2.0))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    backward_through(net, [[1.0]])  # y = w * w * x: dy/dw = 2 w x = 4
    trainer.step(1)
    assert shared.weight.data().asscalar() == pytest.approx(2.0 - 0.1 * 4.0)


def test_adam_first_step_moves_each_weight_by_about_the_learning_rate():
    dense = nn.Dense(1, in_units=2, use_bias=False)
    dense.initialize(init.Zero())
    trainer = gluon.Trainer(dense.collect_params(), "adam", {"learning_rate": 0.1})
    backward_through(dense, [[1.0, -3.0]])
    trainer.step(1)
    assert dense.weight.data().asnumpy().tolist() == [[-0.10000062733888626, 0.10000064969062805]]


def test_allreduce_grads_then_update_is_a_step(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", {"learning_rate": 0.1})
    l2_backward(lin)
    trainer.allreduce_grads()
    trainer.update(3)
    assert lin.weight.data().asnumpy().tolist() == [[-1.0500001907348633, -1.6000001430511475]]


# ---- optimizer states ------------------------------------------------------------------------
def train_steps(dense, trainer, inputs):
    for x in inputs:
        backward_through(dense, [x])
        trainer.step(1)


def test_save_and_load_states_resume_training_exactly(tmp_path):
    inputs = [[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0], [2.0, 1.0]]
    dense = nn.Dense(1, in_units=2, use_bias=False, prefix="resume_")
    dense.initialize(init.One())
    trainer = gluon.Trainer(dense.collect_params(), "adam", {"learning_rate": 0.1})
    train_steps(dense, trainer, inputs[:2])
    trainer.save_states(tmp_path / "trainer.states")
    saved_weight = dense.weight.data().asnumpy()
    train_steps(dense, trainer, inputs[2:])

    other = nn.Dense(1, in_units=2, use_bias=False, prefix="resume_")
    other.initialize(init.One())
    other.weight.set_data(nd.array(saved_weight))
    resumed = gluon.Trainer(other.collect_params(), "adam", {"learning_rate": 0.5})
    resumed.load_states(tmp_path / "trainer.states")
    train_steps(other, resumed, inputs[2:])
    assert resumed.learning_rate == 0.1
    assert np.array_equal(other.weight.data().asnumpy(), dense.weight.data().asnumpy())


# ---- KVStores --------------------------------------------------------------------------------
def two_layer_net(prefix):
    net = nn.Sequential(prefix=prefix)
    with net.name_scope():
        net.add(nn.Dense(4, in_units=3, activation="tanh"), nn.Dense(2, in_units=4))
    net.initialize(init.Xavier())
    return net


def train_net(net, trainer, steps=4):
    rng = np.random.default_rng(7)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        X = nd.array(rng.standard_normal((8, 3)))
        y = nd.array(rng.integers(0, 2, 8))
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(8)


def same_start(prefix):
    local, remote = two_layer_net(prefix), two_layer_net(prefix)
    for a, b in zip(local.collect_params().values(), remote.collect_params().values()):
        b.set_data(a.data())
    return local, remote


@pytest.mark.parametrize("update_on_kvstore", [None, False])
def test_training_through_a_kvstore_matches_local_training(update_on_kvstore):
    local, remote = same_start("kvnet_")
    options = {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}
    train_net(local, gluon.Trainer(local.collect_params(), "sgd", options))
    train_net(remote, gluon.Trainer(remote.collect_params(), "sgd", options,
                                    kvstore=kvstore.create("local"),
                                    update_on_kvstore=update_on_kvstore))
    for a, b in zip(local.collect_params().values(), remote.collect_params().values()):
        np.testing.assert_allclose(a.data().asnumpy(), b.data().asnumpy(), rtol=1e-6, atol=1e-7)


def test_a_worker_joining_a_kvstore_starts_from_the_stores_weights():
    kv = kvstore.create("local")
    first, second = two_layer_net("join_"), two_layer_net("join_")
    train_net(first, gluon.Trainer(first.collect_params(), "sgd", kvstore=kv), steps=2)
    # A learning rate of 0 leaves the store as it is: the joiner ends with the store's weights.
    train_net(second, gluon.Trainer(second.collect_params(), "sgd", {"learning_rate": 0.0},
                                    kvstore=kv), steps=1)
    for a, b in zip(first.collect_params().values(), second.collect_params().values()):
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy())


def test_allreduce_grads_is_refused_when_the_kvstore_updates(lin):
    trainer = gluon.Trainer(lin.collect_params(), "sgd", kvstore=kvstore.create("local"))
    with pytest.raises(AssertionError, match=r"allreduce_grads\(\) when parameters are updated"):
        trainer.allreduce_grads()


# ---- convergence -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", [
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    ("adam", {"learning_rate": 0.05}),
])
def test_a_small_net_learns_a_synthetic_classification_task(name, options):
    paramstore.random.seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)  # XOR of the signs: not linearly separable
    net = nn.Sequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dense(2))
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), name, options)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(60):
        for start in range(0, 256, 32):
            data, label = nd.array(X[start:start + 32]), nd.array(y[start:start + 32])
            with autograd.record():
                l = loss(net(data), label)
            l.backward()
            trainer.step(32)
    accuracy = (net(nd.array(X)).argmax(axis=1).asnumpy() == y).mean()
    assert accuracy > 0.9
