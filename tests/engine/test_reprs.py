"""repr/str of Parameters, ParameterDicts and Blocks (spec 1.5, raw outputs e02, e02b)."""

import numpy as np
import pytest

from paramstore import gluon, nd
from paramstore.gluon import nn

pytestmark = pytest.mark.usefixtures("fresh_names")


@pytest.mark.parametrize(("param", "text"), [
    (gluon.Parameter("foo"), "Parameter foo (shape=None, dtype=<class 'numpy.float32'>)"),
    (gluon.Parameter("foo", shape=3), "Parameter foo (shape=(3,), dtype=<class 'numpy.float32'>)"),
    (gluon.Parameter("foo", shape=(2, 0), dtype="float16"),
     "Parameter foo (shape=(2, 0), dtype=float16)"),
    (gluon.Parameter("foo", shape=(2,), dtype=int),
     "Parameter foo (shape=(2,), dtype=<class 'int'>)"),
    (gluon.Parameter("foo", shape=(2,), dtype=np.float64),
     "Parameter foo (shape=(2,), dtype=<class 'numpy.float64'>)"),
    (gluon.Constant("c", [[1, 2], [3, 4]]),
     "Constant c (shape=(2, 2), dtype=<class 'numpy.float32'>)"),
])
def test_parameter_repr_shows_shape_and_dtype_as_given(param, text):
    assert repr(param) == str(param) == text


def test_empty_parameter_dicts():
    assert repr(gluon.ParameterDict()) == "(\n\n)"
    assert repr(gluon.ParameterDict("p_")) == "p_ (\n\n)"


def test_parameter_dict_lists_one_indented_line_per_parameter():
    params = gluon.ParameterDict("p_")
    params.get("w", shape=(1,))
    assert str(params) == "p_ (\n  Parameter p_w (shape=(1,), dtype=<class 'numpy.float32'>)\n)"


def test_a_parameter_dicts_keys_print_as_gluons_ordered_keys():
    net = nn.Dense(2, in_units=3)
    params = net.collect_params()
    assert repr(params.keys()) == "odict_keys(['dense0_weight', 'dense0_bias'])"
    assert repr(params.values()).startswith("odict_values([Parameter dense0_weight ")
    assert repr(params.items()).startswith("odict_items([('dense0_weight', Parameter ")


def test_sequential_before_and_after_the_first_forward():
    net = nn.Sequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(10))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Dense(None -> 256, Activation(relu))\n"
        "  (1): Dense(None -> 10, linear)\n"
        ")"
    )
    net.initialize()
    net(nd.ones((2, 20)))
    assert str(net) == (
        "Sequential(\n"
        "  (0): Dense(20 -> 256, Activation(relu))\n"
        "  (1): Dense(256 -> 10, linear)\n"
        ")"
    )


@pytest.mark.parametrize(("block", "text"), [
    (lambda: nn.Dense(16, in_units=10), "Dense(10 -> 16, linear)"),
    (lambda: nn.Dense(16, activation="sigmoid", in_units=10),
     "Dense(10 -> 16, Activation(sigmoid))"),
    (lambda: nn.Dense(16), "Dense(None -> 16, linear)"),
    (lambda: nn.Activation("relu"), "Activation(relu)"),
    (lambda: nn.Dropout(0.5), "Dropout(p = 0.5, axes=())"),
    (lambda: nn.BatchNorm(),
     "BatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False, use_global_stats=False, "
     "in_channels=None)"),
    (lambda: nn.BatchNorm(in_channels=4),
     "BatchNorm(axis=1, eps=1e-05, momentum=0.9, fix_gamma=False, use_global_stats=False, "
     "in_channels=4)"),
    (lambda: nn.Flatten(), "Flatten"),
    (lambda: nn.Embedding(10, 4), "Embedding(10 -> 4, float32)"),
    (lambda: nn.LayerNorm(),
     "LayerNorm(eps=1e-05, axis=-1, center=True, scale=True, in_channels=0)"),
    (lambda: nn.LeakyReLU(0.1), "LeakyReLU(0.1)"),
    (lambda: nn.Sequential(), "Sequential(\n\n)"),
])
def test_layer_reprs(block, text):
    assert repr(block()) == text


def test_nested_containers_indent_their_children():
    inner = nn.Sequential()
    inner.add(nn.Dense(4, activation="relu"), nn.Dense(4))
    net = nn.Sequential()
    net.add(inner, nn.Dense(2))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Sequential(\n"
        "    (0): Dense(None -> 4, Activation(relu))\n"
        "    (1): Dense(None -> 4, linear)\n"
        "  )\n"
        "  (1): Dense(None -> 2, linear)\n"
        ")"
    )


def test_hybrid_sequential_repr():
    net = nn.HybridSequential()
    net.add(nn.Dense(3))
    assert repr(net) == "HybridSequential(\n  (0): Dense(None -> 3, linear)\n)"


def test_custom_block_lists_block_attributes_in_assignment_order():
    class MLP(gluon.Block):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Dense(256, activation="relu")
            self.output = nn.Dense(10)

    assert repr(MLP()) == (
        "MLP(\n"
        "  (hidden): Dense(None -> 256, Activation(relu))\n"
        "  (output): Dense(None -> 10, linear)\n"
        ")"
    )


def test_custom_block_without_block_attributes_and_nested_blank_line():
    class MyDense(gluon.Block):
        pass

    assert repr(MyDense()) == "MyDense(\n\n)"
    net = nn.Sequential()
    net.add(MyDense())
    assert repr(net) == "Sequential(\n  (0): MyDense(\n  \n  )\n)"


def test_children_registered_only_with_register_child_are_not_shown():
    class WithReg(gluon.Block):
        def __init__(self):
            super().__init__()
            self.register_child(nn.Dense(2), "hidden")

    assert repr(WithReg()) == "WithReg(\n\n)"


def test_printing_the_unbound_collect_params_shows_the_block():
    assert repr(nn.Dense(3).collect_params) == (
        "<bound method Block.collect_params of Dense(None -> 3, linear)>"
    )
