"""`collect_params(select)`: order, de-duplication, `re.match` selection (spec 1.4, e01b/e01c)."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paramstore import gluon
from paramstore.gluon import nn

pytestmark = pytest.mark.usefixtures("fresh_names")


@pytest.fixture
def net():
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(4), nn.Dense(2), nn.BatchNorm())
    return net


ALL = [
    "sequential0_dense0_weight", "sequential0_dense0_bias", "sequential0_dense1_weight",
    "sequential0_dense1_bias", "sequential0_batchnorm0_gamma", "sequential0_batchnorm0_beta",
    "sequential0_batchnorm0_running_mean", "sequential0_batchnorm0_running_var",
]


@pytest.mark.parametrize(("select", "expected"), [
    (None, ALL),
    ("", ALL),
    (".*weight", ["sequential0_dense0_weight", "sequential0_dense1_weight"]),
    ("weight", []),
    ("dense0", []),
    (r"sequential\d+_dense0", ["sequential0_dense0_weight", "sequential0_dense0_bias"]),
    (".*dense1_", ["sequential0_dense1_weight", "sequential0_dense1_bias"]),
    (".*bias|.*gamma", ["sequential0_dense0_bias", "sequential0_dense1_bias",
                        "sequential0_batchnorm0_gamma"]),
    (".*_weight$", ["sequential0_dense0_weight", "sequential0_dense1_weight"]),
    ("^.*beta", ["sequential0_batchnorm0_beta"]),
])
def test_select_matches_at_the_start_of_the_full_name(net, select, expected):
    assert list(net.collect_params(select).keys()) == expected


def test_selected_dict_keeps_the_block_prefix(net):
    assert net.collect_params(".*weight").prefix == "sequential0_"


@given(st.sampled_from([".*", "seq", ".*_b", ".*a.*", "sequential0_dense[01]", "x|.*mean"]))
def test_select_agrees_with_re_match_on_every_name(select):
    net = nn.Sequential(prefix="sequential0_")
    with net.name_scope():
        net.add(nn.Dense(4), nn.Dense(2), nn.BatchNorm())
    selected = list(net.collect_params(select).keys())
    assert selected == [name for name in ALL if re.match(select, name)]


def test_a_sequential_owns_no_parameters_itself(net):
    assert list(net.params.keys()) == []


def test_own_parameters_come_before_childrens():
    class Order(gluon.Block):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.child_b = nn.Dense(2, in_units=2)
                self.child_a = nn.Dense(2, in_units=2)
            self.own = self.params.get("own", shape=(1,))
            self.params.get("aaa", shape=(1,))

    assert list(Order().collect_params().keys()) == [
        "order0_own", "order0_aaa", "order0_dense0_weight", "order0_dense0_bias",
        "order0_dense1_weight", "order0_dense1_bias",
    ]


def test_a_shared_parameter_is_listed_once_at_its_first_position():
    shared = nn.Dense(2, in_units=2, prefix="zzz_")
    net = nn.Sequential(prefix="s_")
    with net.name_scope():
        net.add(nn.Dense(2, in_units=2), shared, nn.Dense(2, in_units=2), shared)
    assert list(net.collect_params().keys()) == [
        "s_dense0_weight", "s_dense0_bias", "zzz_weight", "zzz_bias",
        "s_dense1_weight", "s_dense1_bias",
    ]


def test_the_same_block_added_twice_lists_its_parameters_once():
    dense = nn.Dense(2, in_units=2)
    net = nn.Sequential()
    net.add(dense, dense)
    assert list(net._children) == ["0", "1"]
    assert list(net.collect_params().keys()) == ["dense0_weight", "dense0_bias"]


def test_two_different_parameters_with_one_name_are_refused():
    net = nn.Sequential()
    net.add(nn.Dense(2, prefix="dup_"), nn.Dense(2, prefix="dup_"))
    with pytest.raises(AssertionError, match=(
        "^Cannot update self with other because they have different Parameters with the same "
        "name 'dup_weight'$"
    )):
        net.collect_params()


def test_blocks_in_an_unregistered_list_warn_and_are_not_collected():
    class ListBlock(gluon.Block):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Dense(2), nn.Dense(2)]

    with pytest.warns(UserWarning) as caught:
        params = ListBlock().collect_params()
    assert list(params.keys()) == []
    assert str(caught[0].message) == (
        '"ListBlock.layers" is an unregistered container with Blocks. Note that Blocks inside '
        "the list, tuple or dict will not be registered automatically. Make sure to register "
        "them using register_child() or switching to nn.Sequential/nn.HybridSequential "
        "instead. "
    )


def test_parameters_from_params_get_are_collected_without_attribute():
    block = gluon.Block(prefix="hidden0_")
    block.params.get("unassigned", shape=(1,))
    block.w = block.params.get("assigned", shape=(1,))
    assert list(block.collect_params().keys()) == ["hidden0_unassigned", "hidden0_assigned"]


def test_a_parameter_made_directly_is_registered_but_not_collected():
    block = gluon.Block(prefix="direct_")
    block.w = gluon.Parameter("direct_w", shape=(2,))
    assert list(block.collect_params().keys()) == []
    assert list(block._reg_params) == ["w"]
