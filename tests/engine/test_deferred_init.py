"""Deferred initialization: shapes from the first forward pass (spec 3; e04, e04b, e11)."""

import re

import numpy as np
import pytest

from paramstore import autograd, cpu, gluon, init, nd
from paramstore.base import EngineError
from paramstore.gluon import DeferredInitializationError, nn

pytestmark = pytest.mark.usefixtures("fresh_names")


def deferred_message(name):
    return re.escape(
        f"Parameter '{name}' has not been initialized yet because initialization was deferred. "
        "Actual initialization happens during the first forward pass. Please pass one batch of "
        "data through the network before accessing Parameters. You can also avoid deferred "
        "initialization by specifying in_units, num_features, etc., for network layers."
    )


class Recording(init.Initializer):
    def __init__(self):
        super().__init__()
        self.calls = []

    def _init_weight(self, name, arr):
        self.calls.append((str(name), arr.shape))
        arr[:] = 1


@pytest.fixture
def net():
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(256, activation="relu"), nn.Dense(10))
    return net


def shapes(net):
    return [(name, p.shape) for name, p in net.collect_params().items()]


def test_unknown_input_width_is_zero_until_the_first_forward(net):
    recorder = Recording()
    net.initialize(recorder)
    assert shapes(net) == [
        ("sequential0_dense0_weight", (256, 0)), ("sequential0_dense0_bias", (256,)),
        ("sequential0_dense1_weight", (10, 0)), ("sequential0_dense1_bias", (10,)),
    ]
    assert recorder.calls == []


def test_a_deferred_weight_raises_and_a_known_bias_is_ready(net):
    net.initialize()
    with pytest.raises(DeferredInitializationError,
                       match=f"^{deferred_message('sequential0_dense0_weight')}$"):
        net[0].weight.data()
    assert not net[0].bias.data().asnumpy().any()
    assert net[0].weight.list_ctx() == [cpu(0)]


def test_first_forward_initializes_layer_by_layer(net):
    recorder = Recording()
    net.initialize(recorder)
    net(nd.ones((2, 20)))
    assert recorder.calls == [("sequential0_dense0_weight", (256, 20)),
                              ("sequential0_dense1_weight", (10, 256))]
    net(nd.ones((2, 20)))
    assert len(recorder.calls) == 2  # no re-initialization


def test_a_different_width_after_initialization_fails_in_the_operator(net):
    net.initialize()
    net(nd.ones((2, 20)))
    with pytest.raises(EngineError, match="FullyConnected: operands of shapes"):
        net(nd.ones((2, 7)))


def test_in_units_makes_the_shape_known_at_initialize():
    recorder = Recording()
    dense = nn.Dense(4, in_units=3)
    dense.initialize(recorder)
    assert recorder.calls == [("dense0_weight", (4, 3))]
    assert dense.weight.data().shape == (4, 3)


def test_forward_before_initialize_raises_not_initialized():
    with pytest.raises(RuntimeError, match="^Parameter 'dense0_weight' has not been initialized"):
        nn.Dense(2, in_units=3)(nd.ones((1, 3)))


def test_a_second_initialize_while_deferred_replaces_the_initializer():
    dense = nn.Dense(2)
    dense.initialize(init.Zero())
    with pytest.warns(UserWarning, match="'dense0_bias' is already initialized"):
        dense.initialize(init.One())
    dense(nd.ones((1, 3)))
    assert dense.weight.data().asnumpy().tolist() == [[1.0, 1.0, 1.0]] * 2
    assert dense.bias.data().asnumpy().tolist() == [0.0, 0.0]


def test_data_set_while_deferred_is_used_instead_of_the_initializer():
    dense = nn.Dense(2)
    dense.initialize()
    dense.weight.set_data(nd.ones((2, 3)))
    assert dense.weight.shape == (2, 3)
    out = dense(nd.ones((1, 3)))
    assert out.asnumpy().tolist() == [[3.0, 3.0]]


def test_flatten_folds_trailing_axes_into_the_input_width():
    dense = nn.Dense(5)
    dense.initialize()
    dense(nd.ones((2, 3, 4)))
    assert dense.weight.shape == (5, 12)


def test_without_flatten_the_last_axis_is_the_input_width():
    dense = nn.Dense(5, flatten=False)
    dense.initialize()
    assert dense(nd.ones((2, 3, 4))).shape == (2, 3, 5)
    assert dense.weight.shape == (5, 4)


def test_deferred_init_under_record_is_not_part_of_the_graph():
    dense = nn.Dense(2, use_bias=False)
    dense.initialize(init.One())
    with autograd.record():
        y = dense(nd.ones((1, 3))).sum()
    y.backward()
    assert dense.weight.grad().asnumpy().tolist() == [[1.0, 1.0, 1.0]] * 2


def test_deferred_arrays_live_on_the_initialize_contexts():
    dense = nn.Dense(2)
    dense.initialize(ctx=cpu(1))
    dense.weight.shape = (2, 3)
    dense.weight._finish_deferred_init()
    assert dense.weight.list_ctx() == [cpu(1)]


def test_batchnorm_infers_its_channels():
    bn = nn.BatchNorm()
    bn.initialize()
    bn(nd.ones((2, 3)))
    assert [p.shape for p in bn.collect_params().values()] == [(3,)] * 4
    assert bn.gamma.data().asnumpy().tolist() == [1.0, 1.0, 1.0]
    assert bn.running_var.data().asnumpy().tolist() == [1.0, 1.0, 1.0]


def test_a_plain_block_does_not_infer_shapes():
    class PlainBlock(gluon.Block):
        def __init__(self):
            super().__init__(prefix="pb0_")
            self.weight = self.params.get("weight", shape=(2, 0), allow_deferred_init=True)

        def forward(self, x):
            return nd.dot(x, self.weight.data())

    block = PlainBlock()
    block.initialize()
    with pytest.raises(DeferredInitializationError, match=deferred_message("pb0_weight")):
        block(nd.ones((1, 2)))


def test_a_hybrid_block_that_cannot_infer_names_the_unknown_parameters():
    class NoInfer(gluon.HybridBlock):
        def __init__(self):
            super().__init__(prefix="hb0_")
            self.weight = self.params.get("weight", shape=(0,), allow_deferred_init=True)

        def hybrid_forward(self, F, x, weight):
            return x * weight

    block = NoInfer()
    block.initialize()
    with pytest.raises(ValueError) as error:
        block(nd.ones((2,)))
    assert str(error.value) == (
        "Deferred initialization failed because shape cannot be inferred. Cannot decide shape "
        "for the following arguments (0s in shape means unknown dimensions). Consider providing "
        "them as input:\n\thb0_weight: (0,)"
    )


def test_finishing_with_an_unknown_shape_fails_and_forgets_the_deferral():
    param = gluon.Parameter("dp", shape=(2, 0), allow_deferred_init=True)
    param.initialize()
    with pytest.raises(AssertionError, match=re.escape(
        "Cannot initialize Parameter 'dp' because it has invalid shape: (2, 0). Please specify "
        "in_units, in_channels, etc for `Block`s."
    )):
        param._finish_deferred_init()
    with pytest.raises(RuntimeError, match="^Parameter 'dp' has not been initialized. Note"):
        param.data()


def test_user_hybrid_block_gets_parameters_as_keywords():
    class Scale(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.scale = self.params.get("scale", shape=(3,), init=init.Constant(2.0))

        def hybrid_forward(self, F, x, scale):
            return F.broadcast_mul(x, scale)

    block = Scale()
    block.hybridize()
    block.initialize()
    assert block(nd.ones((1, 3))).asnumpy().tolist() == [[2.0, 2.0, 2.0]]
    np.testing.assert_array_equal(block.scale.data().asnumpy(), [2.0, 2.0, 2.0])
