"""Parameters on several contexts and data-parallel training, against MXNet 1.9.1 runs."""

import json
import pathlib

import numpy as np
import pytest
from oracle.context_cases import RUNS, train

import paramstore
from paramstore import autograd, cpu, gluon, nd
from paramstore.gluon import nn

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "contexts.json").read_text())


@pytest.mark.parametrize("name", sorted(RUNS))
def test_data_parallel_training_matches_gluon(name):
    seen = train(paramstore, *RUNS[name])
    expected = RECORDED[name]
    for key in ("list_ctx", "data contexts", "grad contexts", "output contexts"):
        assert seen[key] == expected[key], key
    np.testing.assert_allclose(seen["grads"], expected["grads"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(seen["weights"], expected["weights"], rtol=1e-5, atol=1e-7)


def two_context_dense():
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=[cpu(0), cpu(1)])
    return net


def test_each_context_has_its_own_copy_and_gradient():
    net = two_context_dense()
    first, second = net.weight.list_data()
    assert first is not second and first.context == cpu(0) and second.context == cpu(1)
    assert net.weight.data(cpu(1)) is second
    assert net.weight.grad(cpu(1)).context == cpu(1)
    assert "@cpu(1)" in repr(second)


def test_an_input_on_a_context_uses_that_contexts_copy():
    net = two_context_dense()
    x = nd.ones((1, 3), ctx=cpu(1))
    with autograd.record():
        y = net(x)
    y.backward()
    assert y.context == cpu(1)
    assert net.weight.grad(cpu(0)).asnumpy().sum() == 0
    assert net.weight.grad(cpu(1)).asnumpy().sum() != 0


def test_a_context_the_parameter_is_not_on_is_refused():
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=cpu(0))
    with pytest.raises(RuntimeError, match="was not initialized on context cpu\\(1\\)"):
        net(nd.ones((1, 3), ctx=cpu(1)))


def test_reset_ctx_moves_the_average_to_the_new_contexts():
    net = two_context_dense()
    net.weight.list_data()[1][:] = net.weight.list_data()[0] + 2
    expected = net.weight.list_data()[0].asnumpy() + 1
    net.weight.reset_ctx([cpu(2)])
    assert net.weight.list_ctx() == [cpu(2)]
    np.testing.assert_allclose(net.weight.data(cpu(2)).asnumpy(), expected, rtol=1e-6)


def test_allreduce_grads_is_refused_while_the_local_store_updates_several_contexts():
    net = two_context_dense()
    trainer = gluon.Trainer(net.collect_params(), "sgd")
    with pytest.raises(AssertionError, match="update_on_kvstore` to False"):
        trainer.allreduce_grads()


def test_as_in_context_copies_only_across_contexts():
    x = nd.ones((2,))
    assert x.as_in_context(cpu(0)) is x
    moved = x.as_in_context(cpu(1))
    assert moved is not x and moved.context == cpu(1)
    assert x.copyto(cpu(1)).context == cpu(1)


# ---- gluon.utils -----------------------------------------------------------------------------
def test_split_and_load_places_one_slice_per_context():
    parts = gluon.utils.split_and_load(nd.arange(12).reshape((6, 2)), [cpu(0), cpu(1), cpu(2)])
    assert [p.context for p in parts] == [cpu(0), cpu(1), cpu(2)]
    assert [p.asnumpy()[:, 0].tolist() for p in parts] == [[0, 2], [4, 6], [8, 10]]


def test_split_data_refuses_an_uneven_split_unless_allowed():
    data = nd.arange(5)
    with pytest.raises(ValueError, match="cannot be evenly split into 2 slices"):
        gluon.utils.split_data(data, 2)
    assert [p.shape for p in gluon.utils.split_data(data, 2, even_split=False)] == [(3,), (2,)]


def test_clip_global_norm_scales_every_array_to_the_joint_norm():
    a, b = nd.array([3.0, 0.0]), nd.array([0.0, 4.0])
    total = gluon.utils.clip_global_norm([a, b], 1.0)
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([a.asnumpy(), b.asnumpy()]),
                               [0.6, 0, 0, 0.8], rtol=1e-6)


def test_clip_global_norm_warns_of_a_norm_that_is_not_finite():
    with pytest.warns(UserWarning, match="nan or inf is detected"):
        gluon.utils.clip_global_norm([nd.array([np.inf])], 1.0)
