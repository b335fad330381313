"""Block names and prefixes (spec 1.1-1.3; raw outputs e01, e01b, e01d, e06)."""

import pytest

from paramstore import gluon
from paramstore.gluon import nn
from paramstore.name import NameManager

pytestmark = pytest.mark.usefixtures("fresh_names")


def names(params):
    return list(params.keys())


def test_blocks_are_numbered_per_class_name():
    first, second = nn.Dense(2), nn.Dense(2)
    assert (first.name, first.prefix, second.name, second.prefix) == (
        "dense0", "dense0_", "dense1", "dense1_")
    assert [nn.Sequential().name, nn.Sequential().name] == ["sequential0", "sequential1"]


@pytest.mark.parametrize(("make", "name"), [
    (nn.HybridSequential, "hybridsequential0"),
    (nn.BatchNorm, "batchnorm0"),
    (lambda: nn.Activation("relu"), "relu0"),
    (lambda: nn.Dropout(0.5), "dropout0"),
    (lambda: nn.Embedding(10, 4), "embedding0"),
    (nn.LayerNorm, "layernorm0"),
    (nn.Flatten, "flatten0"),
])
def test_each_layer_is_named_after_its_hint(make, name):
    assert make().name == name


def test_dense_parameters_take_the_block_prefix():
    assert names(nn.Dense(3).params) == ["dense0_weight", "dense0_bias"]


def test_a_given_prefix_is_used_verbatim_and_consumes_no_number():
    a, b = nn.Dense(3, prefix="mydense_"), nn.Dense(3, prefix="mydense_")
    assert (a.name, b.prefix, names(b.params)) == (
        "mydense", "mydense_", ["mydense_weight", "mydense_bias"])
    assert nn.Dense(3).name == "dense0"


def test_a_prefix_without_underscore_is_also_the_name():
    foo = nn.Dense(3, prefix="foo")
    assert (foo.name, names(foo.params)) == ("foo", ["fooweight", "foobias"])


def test_empty_prefix_gives_bare_parameter_names():
    empty = nn.Dense(3, prefix="")
    assert (empty.name, empty.prefix, names(empty.params)) == ("", "", ["weight", "bias"])


def test_children_inside_name_scope_get_the_parent_prefix():
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(4), nn.Dense(2))
    assert [b.name for b in net.children()] == ["sequential0_dense0", "sequential0_dense1"]
    assert names(net.collect_params()) == [
        "sequential0_dense0_weight", "sequential0_dense0_bias",
        "sequential0_dense1_weight", "sequential0_dense1_bias",
    ]


def test_children_without_name_scope_are_numbered_globally():
    net = nn.Sequential()
    net.add(nn.Dense(4), nn.Dense(2))
    assert [b.name for b in net.children()] == ["dense0", "dense1"]


def test_scope_counters_persist_across_entries_of_name_scope():
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(2), nn.Dense(2))
    with net.name_scope():
        net.add(nn.Dense(2))
    assert [b.name for b in net.children()] == [
        "sequential0_dense0", "sequential0_dense1", "sequential0_dense2"]


def test_nested_scopes_chain_prefixes():
    net = nn.Sequential()
    with net.name_scope():
        inner = nn.Sequential()
        with inner.name_scope():
            inner.add(nn.Dense(2))
        net.add(inner, nn.Dense(2))
    assert names(net.collect_params()) == [
        "sequential0_sequential0_dense0_weight", "sequential0_sequential0_dense0_bias",
        "sequential0_dense0_weight", "sequential0_dense0_bias",
    ]


def test_a_given_prefix_inside_a_scope_is_appended_to_the_parents():
    net = nn.Sequential(prefix="net_")
    with net.name_scope():
        net.add(nn.Dense(2, prefix="fc_"), nn.Dense(2))
    assert [b.name for b in net.children()] == ["net_fc", "net_dense0"]


def test_custom_block_children_use_its_scope():
    class Model(gluon.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.hidden = nn.Dense(4)
                self.out = nn.Dense(2)

    model = Model()
    assert (model.name, model.hidden.name, model.out.name) == (
        "model0", "model0_dense0", "model0_dense1")
    assert list(model._children) == ["hidden", "out"]


def test_a_child_made_without_scope_while_inside_anothers_scope_uses_the_outer_scope():
    class NoScope(gluon.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = nn.Dense(2)

    net = nn.Sequential()
    with net.name_scope():
        block = NoScope()
        net.add(block, nn.Dense(2))
    assert (block.name, block.dense.name) == ("sequential0_noscope0", "sequential0_dense0")
    assert [b.name for b in net.children()] == ["sequential0_noscope0", "sequential0_dense1"]


def test_empty_prefix_name_scope_does_nothing():
    net = nn.Sequential(prefix="")
    with net.name_scope():
        net.add(nn.Dense(2), nn.Dense(2))
    assert names(net.collect_params()) == [
        "dense0_weight", "dense0_bias", "dense1_weight", "dense1_bias"]


def test_dense_activation_child_is_named_after_the_activation():
    dense = nn.Dense(2, activation="relu")
    assert (dense.act.name, dense.act.prefix, list(dense._children)) == (
        "dense0_relu", "dense0_relu_", ["act"])


def test_activation_blocks_count_under_their_activation_type():
    assert [nn.Activation("relu").name, nn.Activation("relu").name,
            nn.Activation("tanh").name] == ["relu0", "relu1", "tanh0"]


def test_a_fresh_name_manager_restarts_the_counters_and_restores_them():
    assert nn.Dense(2).name == "dense0"
    with NameManager():
        assert nn.Dense(2).name == "dense0"
    assert nn.Dense(2).name == "dense1"


def test_params_sharing_keeps_own_name_and_source_parameter_names():
    shared = nn.Dense(8, in_units=8)
    tied = nn.Dense(8, params=shared.params)
    assert (tied.name, tied.prefix, tied.params.prefix) == ("dense1", "dense1_", "dense0_")
    assert names(tied.params) == ["dense0_weight", "dense0_bias"]
    assert tied.weight is shared.weight and tied.params is not shared.params
    assert tied.params._shared is shared.params


def test_sharing_with_a_mismatched_shape_names_the_attribute():
    shared = nn.Dense(3, in_units=4)
    with pytest.raises(AssertionError, match=(
        r"^Cannot retrieve Parameter 'dense0_weight' because desired attribute does not match "
        r"with stored for attribute 'shape': desired '\(3, 5\)' vs stored '\(3, 4\)'\.$"
    )):
        nn.Dense(3, in_units=5, params=shared.params)


def test_sharing_fills_unknown_dimensions_from_the_known_side():
    shared = nn.Dense(3, in_units=4)
    tied = nn.Dense(3, params=shared.params)
    assert tied.weight.shape == (3, 4)


def test_a_tied_layer_without_bias_fetches_only_the_weight():
    shared = nn.Dense(3, in_units=4)
    tied = nn.Dense(3, use_bias=False, params=shared.params)
    assert names(tied.params) == ["dense0_weight"]


def test_sharing_a_whole_model_through_collect_params():
    class Model(gluon.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.dense0 = nn.Dense(2, in_units=2)
                self.dense1 = nn.Dense(2, in_units=2)

    m1 = Model()
    m2 = Model(params=m1.collect_params())
    assert (m2.name, m2.params.prefix, m2.dense0.name, m2.dense0.params.prefix) == (
        "model1", "model0_", "model1_dense0", "model0_dense0_")
    assert all(a is b for a, b in zip(m1.collect_params().values(),
                                        m2.collect_params().values()))


def test_changing_a_block_attribute_to_another_type_is_refused():
    class Model(gluon.Block):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Dense(2)

    model = Model()
    with pytest.raises(TypeError, match=(
        r"^Changing attribute type for hidden from <class "
        r"'paramstore\.gluon\.nn\.basic_layers\.Dense'> to <class 'int'>is not allowed\.$"
    )):
        model.hidden = 3


def test_assigning_a_second_parameter_to_an_attribute_is_refused():
    block = gluon.Block()
    block.w = block.params.get("w", shape=(1,))
    with pytest.raises(AssertionError, match=r"^Overriding Parameter attribute %s is not"):
        block.w = block.params.get("v", shape=(1,))


def test_sequential_slicing_makes_a_same_prefix_container_of_the_same_blocks():
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(2), nn.Dense(2), nn.Dense(2))
    part = net[1:]
    assert (type(part).__name__, part.prefix, len(part)) == ("Sequential", "sequential0_", 2)
    assert part[1] is net[2] and list(part._children) == ["0", "1"]
    assert nn.Sequential().name == "sequential1"  # slicing consumed no number
