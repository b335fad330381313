"""The "Parameter Management" chapter, cell by cell, with `mxnet` replaced by `paramstore`.

Each test replays the cells before it (in a fresh naming scope, as the chapter runs in a fresh
process) and checks what the cell prints: names, shapes, dtypes and reprs exactly; random
values by their structure and distribution.
"""

import numpy as np
import pytest

from paramstore import init, nd
from paramstore.gluon import nn

pytestmark = pytest.mark.usefixtures("fresh_names")

ZEROS_256x20 = """
[[0. 0. 0. ... 0. 0. 0.]
 [0. 0. 0. ... 0. 0. 0.]
 [0. 0. 0. ... 0. 0. 0.]
 ...
 [0. 0. 0. ... 0. 0. 0.]
 [0. 0. 0. ... 0. 0. 0.]
 [0. 0. 0. ... 0. 0. 0.]]
<NDArray 256x20 @cpu(0)>"""


def cell_1():
    net = nn.Sequential()
    net.add(nn.Dense(256, activation="relu"))
    net.add(nn.Dense(10))
    net.initialize()
    x = nd.random.uniform(shape=(2, 20))
    return net, x, net(x)


def cell_9(x):
    def block1():
        net = nn.Sequential()
        net.add(nn.Dense(32, activation="relu"))
        net.add(nn.Dense(16, activation="relu"))
        return net

    def block2():
        net = nn.Sequential()
        for _ in range(4):
            net.add(block1())
        return net

    rgnet = nn.Sequential()
    rgnet.add(block2())
    rgnet.add(nn.Dense(10))
    rgnet.initialize()
    return rgnet, rgnet(x)


def test_cell_1_forward_gives_a_2x10_array():
    _, _, out = cell_1()
    assert repr(out).endswith("\n<NDArray 2x10 @cpu(0)>")
    assert out.shape == (2, 10)
    assert np.abs(out.asnumpy()).max() < 1.0


def test_cell_2_prints_each_layers_params(capsys):
    net, _, _ = cell_1()
    print(net[0].params)
    print(net[1].params)
    assert capsys.readouterr().out == (
        "dense0_ (\n"
        "  Parameter dense0_weight (shape=(256, 20), dtype=float32)\n"
        "  Parameter dense0_bias (shape=(256,), dtype=float32)\n"
        ")\n"
        "dense1_ (\n"
        "  Parameter dense1_weight (shape=(10, 256), dtype=float32)\n"
        "  Parameter dense1_bias (shape=(10,), dtype=float32)\n"
        ")\n"
    )


def test_cell_3_prints_the_bias_and_its_zeros(capsys):
    net, _, _ = cell_1()
    print(net[1].bias)
    print(net[1].bias.data())
    assert capsys.readouterr().out == (
        "Parameter dense1_bias (shape=(10,), dtype=float32)\n"
        "\n[0. 0. 0. 0. 0. 0. 0. 0. 0. 0.]\n<NDArray 10 @cpu(0)>\n"
    )


def test_cell_4_reads_the_weight_by_name(capsys):
    net, _, _ = cell_1()
    print(net[0].params["dense0_weight"])
    print(net[0].params["dense0_weight"].data())
    out = capsys.readouterr().out
    assert out.startswith("Parameter dense0_weight (shape=(256, 20), dtype=float32)\n\n[[")
    assert out.endswith("]]\n<NDArray 256x20 @cpu(0)>\n")
    assert "..." in out  # summarised like NumPy
    weight = net[0].params["dense0_weight"].data().asnumpy()
    assert np.abs(weight).max() <= 0.07 and weight.std() > 0.03


def test_cell_5_gradient_is_all_zeros_before_backward():
    net, _, _ = cell_1()
    assert repr(net[0].weight.grad()) == ZEROS_256x20


def test_cell_6_collect_params_of_a_layer_and_of_the_network(capsys):
    net, _, _ = cell_1()
    print(net[0].collect_params())
    print(net.collect_params())
    assert capsys.readouterr().out == (
        "dense0_ (\n"
        "  Parameter dense0_weight (shape=(256, 20), dtype=float32)\n"
        "  Parameter dense0_bias (shape=(256,), dtype=float32)\n"
        ")\n"
        "sequential0_ (\n"
        "  Parameter dense0_weight (shape=(256, 20), dtype=float32)\n"
        "  Parameter dense0_bias (shape=(256,), dtype=float32)\n"
        "  Parameter dense1_weight (shape=(10, 256), dtype=float32)\n"
        "  Parameter dense1_bias (shape=(10,), dtype=float32)\n"
        ")\n"
    )


def test_cell_7_indexes_collected_params_by_name():
    net, _, _ = cell_1()
    assert repr(net.collect_params()["dense1_bias"].data()) == (
        "\n[0. 0. 0. 0. 0. 0. 0. 0. 0. 0.]\n<NDArray 10 @cpu(0)>"
    )


def test_cell_8_selects_params_with_regular_expressions(capsys):
    net, _, _ = cell_1()
    print(net.collect_params(".*weight"))
    print(net.collect_params("dense0.*"))
    assert capsys.readouterr().out == (
        "sequential0_ (\n"
        "  Parameter dense0_weight (shape=(256, 20), dtype=float32)\n"
        "  Parameter dense1_weight (shape=(10, 256), dtype=float32)\n"
        ")\n"
        "sequential0_ (\n"
        "  Parameter dense0_weight (shape=(256, 20), dtype=float32)\n"
        "  Parameter dense0_bias (shape=(256,), dtype=float32)\n"
        ")\n"
    )


def test_cell_9_nested_network_forward_gives_tiny_outputs():
    _, x, _ = cell_1()
    _, out = cell_9(x)
    assert repr(out).endswith("\n<NDArray 2x10 @cpu(0)>")
    # Nine layers of U(-0.07, 0.07) weights shrink the signal to almost nothing.
    assert np.abs(out.asnumpy()).max() < 1e-4


RGNET_REPR = """<bound method Block.collect_params of Sequential(
  (0): Sequential(
    (0): Sequential(
      (0): Dense(20 -> 32, Activation(relu))
      (1): Dense(32 -> 16, Activation(relu))
    )
    (1): Sequential(
      (0): Dense(16 -> 32, Activation(relu))
      (1): Dense(32 -> 16, Activation(relu))
    )
    (2): Sequential(
      (0): Dense(16 -> 32, Activation(relu))
      (1): Dense(32 -> 16, Activation(relu))
    )
    (3): Sequential(
      (0): Dense(16 -> 32, Activation(relu))
      (1): Dense(32 -> 16, Activation(relu))
    )
  )
  (1): Dense(16 -> 10, linear)
)>"""

RGNET_PARAMS = "\n".join(
    ["sequential1_ ("]
    + [
        line
        for number in range(2, 10)
        for line in (
            f"  Parameter dense{number}_weight (shape=({32 if number % 2 == 0 else 16}, "
            f"{20 if number == 2 else 16 if number % 2 == 0 else 32}), dtype=float32)",
            f"  Parameter dense{number}_bias (shape=({32 if number % 2 == 0 else 16},), "
            "dtype=float32)",
        )
    ]
    + [
        "  Parameter dense10_weight (shape=(10, 16), dtype=float32)",
        "  Parameter dense10_bias (shape=(10,), dtype=float32)",
        ")",
    ]
)


def test_cell_10_prints_the_nested_structure_and_its_parameters(capsys):
    _, x, _ = cell_1()
    rgnet, _ = cell_9(x)
    print(rgnet.collect_params)
    print(rgnet.collect_params())
    assert capsys.readouterr().out == RGNET_REPR + "\n" + RGNET_PARAMS + "\n"


def test_cell_10_parameter_listing_matches_the_chapter_line_by_line():
    _, x, _ = cell_1()
    rgnet, _ = cell_9(x)
    lines = str(rgnet.collect_params()).split("\n")
    assert lines[1] == "  Parameter dense2_weight (shape=(32, 20), dtype=float32)"
    assert lines[4] == "  Parameter dense3_bias (shape=(16,), dtype=float32)"
    assert lines[-2] == "  Parameter dense10_bias (shape=(10,), dtype=float32)"
    assert len(lines) == 20


def test_cell_11_reaches_a_bias_through_nested_indexing():
    _, x, _ = cell_1()
    rgnet, _ = cell_9(x)
    assert rgnet[0][1][0].bias.name == "dense4_bias"
    assert repr(rgnet[0][1][0].bias.data()) == (
        "\n[0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0.\n"
        " 0. 0. 0. 0. 0. 0. 0. 0.]\n<NDArray 32 @cpu(0)>"
    )


def test_cell_12_normal_reinitialization_draws_small_weights_and_keeps_zero_biases():
    net, _, _ = cell_1()
    net.initialize(init=init.Normal(sigma=0.01), force_reinit=True)
    row = net[0].weight.data()[0]
    assert repr(row).endswith("\n<NDArray 20 @cpu(0)>")
    weight = net[0].weight.data().asnumpy()
    assert weight.std() == pytest.approx(0.01, rel=0.1)
    assert not net[0].bias.data().asnumpy().any()


def test_cell_13_constant_one_fills_the_first_row():
    net, _, _ = cell_1()
    net.initialize(init=init.Constant(1), force_reinit=True)
    assert repr(net[0].weight.data()[0]) == (
        "\n[1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1. 1.]\n<NDArray 20 @cpu(0)>"
    )


def test_cell_14_layer_and_parameter_level_initializers(capsys):
    net, _, _ = cell_1()
    net[1].initialize(init=init.Constant(42), force_reinit=True)
    net[0].weight.initialize(init=init.Xavier(), force_reinit=True)
    print(net[1].weight.data()[0, 0])
    print(net[0].weight.data()[0])
    out = capsys.readouterr().out
    assert out.startswith("\n[42.]\n<NDArray 1 @cpu(0)>\n\n[")
    assert out.endswith("]\n<NDArray 20 @cpu(0)>\n")
    bound = np.sqrt(6 / (20 + 256))
    weight = net[0].weight.data().asnumpy()
    assert np.abs(weight).max() <= bound and weight.std() > bound / 2


def test_cell_15_custom_initializer_sees_only_the_weights(capsys):
    class MyInit(init.Initializer):
        def _init_weight(self, name, data):
            print("Init", name, data.shape)
            data[:] = nd.random.uniform(low=-10, high=10, shape=data.shape)
            data *= data.abs() >= 5

    net, _, _ = cell_1()
    net.initialize(MyInit(), force_reinit=True)
    assert capsys.readouterr().out == "Init dense0_weight (256, 20)\nInit dense1_weight (10, 256)\n"
    weight = net[0].weight.data().asnumpy()
    assert np.all((weight == 0) | (np.abs(weight) >= 5))
    assert not net[0].bias.data().asnumpy().any()


def test_cell_16_writes_through_data_change_the_parameter():
    net, _, _ = cell_1()
    before = net[0].weight.data()[0].asnumpy()
    net[0].weight.data()[:] += 1
    net[0].weight.data()[0, 0] = 42
    row = net[0].weight.data()[0].asnumpy()
    assert row[0] == 42
    np.testing.assert_allclose(row[1:], before[1:] + 1, rtol=1e-6)


def test_cell_17_tied_layers_share_one_weight(capsys):
    net = nn.Sequential()
    shared = nn.Dense(8, activation="relu")
    net.add(nn.Dense(8, activation="relu"), shared,
            nn.Dense(8, activation="relu", params=shared.params), nn.Dense(10))
    net.initialize()
    x = nd.random.uniform(shape=(2, 20))
    net(x)
    print(net[1].weight.data()[0] == net[2].weight.data()[0])
    net[1].weight.data()[0, 0] = 100
    print(net[1].weight.data()[0] == net[2].weight.data()[0])
    ones = "\n[1. 1. 1. 1. 1. 1. 1. 1.]\n<NDArray 8 @cpu(0)>\n"
    assert capsys.readouterr().out == ones + ones
    assert net[2].weight.data()[0, 0].asscalar() == 100
