"""save_parameters / load_parameters and ParameterDict.save / load (spec 7; e08, e08c, e11).

Files are safetensors; keys and error messages are Gluon's.
"""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from paramstore import checkpoint, cpu, gluon, init, nd
from paramstore.gluon import DeferredInitializationError, nn

pytestmark = pytest.mark.usefixtures("fresh_names")


class MLP(gluon.Block):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = nn.Dense(4, activation="relu", in_units=3)
            self.output = nn.Dense(2, in_units=4)

    def forward(self, x):
        return self.output(self.hidden(x))


def mlp():
    model = MLP()
    model.initialize()
    return model


def tied_sequential(deferred=False):
    shared = nn.Dense(3, in_units=0 if deferred else 3)
    net = nn.Sequential()
    net.add(shared, nn.Dense(3, params=shared.params), nn.Dense(2, in_units=3))
    net.initialize()
    return net


def test_keys_are_structural_paths(tmp_path):
    path = tmp_path / "mlp.safetensors"
    mlp().save_parameters(str(path))
    assert sorted(load_file(path)) == ["hidden.bias", "hidden.weight", "output.bias",
                                       "output.weight"]
    assert list(checkpoint.load(path).tensors) == [
        "hidden.weight", "hidden.bias", "output.weight", "output.bias"]


def test_saving_to_a_folder_raises_naming_it_and_leaves_no_temporary_file(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=f"{folder} is a folder: name the file"):
        mlp().save_parameters(str(folder))
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_saving_into_a_missing_folder_raises_naming_the_folder(tmp_path):
    missing = tmp_path / "checkpoints"
    with pytest.raises(FileNotFoundError, match=f"there is no folder {missing}$"):
        mlp().save_parameters(str(missing / "mlp.safetensors"))
    assert list(tmp_path.iterdir()) == []


def test_a_clone_with_another_prefix_loads_the_file(tmp_path):
    path = str(tmp_path / "mlp.safetensors")
    original = mlp()
    original.save_parameters(path)
    clone = MLP()
    clone.load_parameters(path)
    assert clone.name == "mlp1"
    x = nd.ones((2, 3))
    np.testing.assert_array_equal(clone(x).asnumpy(), original(x).asnumpy())


def test_sequential_and_nested_keys(tmp_path):
    inner = nn.Sequential()
    inner.add(nn.Dense(2, in_units=3))
    net = nn.Sequential()
    net.add(nn.Dense(3, in_units=3), nn.BatchNorm(in_channels=3), inner)
    net.initialize()
    path = tmp_path / "seq.safetensors"
    net.save_parameters(str(path))
    assert list(checkpoint.load(path).tensors) == [
        "0.weight", "0.bias", "1.gamma", "1.beta", "1.running_mean", "1.running_var",
        "2.0.weight", "2.0.bias",
    ]


def test_a_tied_parameter_is_stored_once_and_aliased(tmp_path):
    path = tmp_path / "tied.safetensors"
    tied_sequential().save_parameters(str(path))
    saved = checkpoint.load(path)
    assert list(saved.tensors) == ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight",
                                   "2.bias"]
    assert saved.aliases == {"1.weight": "0.weight", "1.bias": "0.bias"}
    assert sorted(load_file(path)) == ["0.bias", "0.weight", "2.bias", "2.weight"]


def test_deduplicate_keeps_the_last_path(tmp_path):
    path = tmp_path / "dedup.safetensors"
    tied_sequential().save_parameters(str(path), deduplicate=True)
    assert sorted(load_file(path)) == ["1.bias", "1.weight", "2.bias", "2.weight"]


@pytest.mark.parametrize("deduplicate", [False, True])
def test_a_tied_net_round_trips_and_stays_tied(tmp_path, deduplicate):
    path = str(tmp_path / "tied.safetensors")
    source = tied_sequential()
    source.save_parameters(path, deduplicate=deduplicate)
    target = tied_sequential()
    target.load_parameters(path)
    assert target[0].weight is target[1].weight
    np.testing.assert_array_equal(target[1].weight.data().asnumpy(),
                                  source[0].weight.data().asnumpy())
    target[0].weight.data()[0, 0] = 7
    assert target[1].weight.data()[0, 0].asscalar() == 7


def test_loading_fills_a_deferred_network(tmp_path):
    path = str(tmp_path / "tied.safetensors")
    source = tied_sequential()
    source.save_parameters(path)
    target = tied_sequential(deferred=True)
    target.load_parameters(path)
    assert target[0].weight.shape == (3, 3) and target[0].weight.list_ctx() == [cpu(0)]
    np.testing.assert_array_equal(target(nd.ones((1, 3))).asnumpy(),
                                  source(nd.ones((1, 3))).asnumpy())


def test_loading_a_never_initialized_network(tmp_path):
    path = str(tmp_path / "mlp.safetensors")
    mlp().save_parameters(path)
    fresh = MLP()
    fresh.load_parameters(path)
    assert fresh.hidden.weight.data().shape == (4, 3)


def test_loading_into_an_initialized_net_writes_in_place(tmp_path):
    path = str(tmp_path / "mlp.safetensors")
    source = mlp()
    source.save_parameters(path)
    target = mlp()
    array = target.hidden.weight.data()
    target.load_parameters(path)
    assert target.hidden.weight.data() is array
    np.testing.assert_array_equal(array.asnumpy(), source.hidden.weight.data().asnumpy())


def small_and_big(tmp_path):
    small = nn.Sequential()
    small.add(nn.Dense(2, in_units=2))
    small.initialize()
    big = nn.Sequential()
    big.add(nn.Dense(2, in_units=2), nn.Dense(2, in_units=2))
    big.initialize()
    small_path, big_path = str(tmp_path / "small.st"), str(tmp_path / "big.st")
    small.save_parameters(small_path)
    big.save_parameters(big_path)
    return small, big, small_path, big_path


def test_a_missing_key_is_reported_with_the_file_contents(tmp_path):
    _, big, small_path, _ = small_and_big(tmp_path)
    with pytest.raises(AssertionError) as error:
        big.load_parameters(small_path)
    assert str(error.value) == (
        f"Parameter '1.weight' is missing in file '{small_path}', which contains parameters: "
        "'0.weight', '0.bias'. Set allow_missing=True to ignore missing parameters."
    )


def test_allow_missing_loads_what_is_there(tmp_path):
    small, big, small_path, _ = small_and_big(tmp_path)
    before = big[1].weight.data().asnumpy()
    big.load_parameters(small_path, allow_missing=True)
    np.testing.assert_array_equal(big[0].weight.data().asnumpy(), small[0].weight.data().asnumpy())
    np.testing.assert_array_equal(big[1].weight.data().asnumpy(), before)


def test_an_extra_key_is_reported_with_the_blocks_own_parameters(tmp_path):
    small, _, _, big_path = small_and_big(tmp_path)
    with pytest.raises(ValueError) as error:
        small.load_parameters(big_path)
    assert str(error.value) == (
        f"Parameter '1.weight' loaded from file '{big_path}' is not present in ParameterDict, "
        "which contains parameters . Set ignore_extra=True to ignore. "
    )
    small.load_parameters(big_path, ignore_extra=True)


def test_long_key_lists_are_abbreviated(tmp_path):
    many = nn.Sequential()
    many.add(*(nn.Dense(2, in_units=2) for _ in range(6)))
    many.initialize()
    more = nn.Sequential()
    more.add(*(nn.Dense(2, in_units=2) for _ in range(7)))
    path = str(tmp_path / "many.st")
    many.save_parameters(path)
    with pytest.raises(AssertionError, match=re.escape(
        "which contains parameters: '0.weight', '0.bias', '1.weight', ..., '4.weight', "
        "'4.bias', '5.weight', '5.bias'. Set allow_missing"
    )):
        more.load_parameters(path)


def test_a_shape_mismatch_changes_nothing(tmp_path):
    path = str(tmp_path / "a.st")
    source = nn.Sequential()
    source.add(nn.Dense(2, in_units=2), nn.Dense(3, in_units=2))
    source.initialize()
    source.save_parameters(path)
    target = nn.Sequential()
    target.add(nn.Dense(2, in_units=2), nn.Dense(5, in_units=2))
    target.initialize()
    before = target[0].weight.data().asnumpy()
    with pytest.raises(AssertionError, match=re.escape(
        "Failed loading Parameter 'dense3_weight' from saved params: shape incompatible "
        "expected (5, 2) vs saved (3, 2)"
    )):
        target.load_parameters(path)
    np.testing.assert_array_equal(target[0].weight.data().asnumpy(), before)


def test_a_dtype_mismatch_needs_cast_dtype(tmp_path):
    path = str(tmp_path / "a.st")
    source = nn.Dense(2, in_units=2)
    source.initialize()
    source.save_parameters(path)
    target = nn.Dense(2, in_units=2, dtype="float16")
    target.initialize()
    with pytest.raises(AssertionError, match=re.escape(
        "Failed loading Parameter 'dense1_weight' from saved params: dtype incompatible expected "
        "float16 vs saved <class 'numpy.float32'>. Set cast_dtype=True to cast the dtype of "
        "saved params."
    )):
        target.load_parameters(path)
    target.load_parameters(path, cast_dtype=True)
    assert (target.weight.dtype, target.weight.data().dtype) == ("float16", np.float16)
    target.load_parameters(path, cast_dtype=True, dtype_source="saved")
    assert target.weight.data().dtype == np.float32


def test_loading_on_other_contexts_than_the_initialized_ones_is_refused(tmp_path):
    path = str(tmp_path / "a.st")
    dense = nn.Dense(2, in_units=2)
    dense.initialize()
    dense.save_parameters(path)
    with pytest.raises(AssertionError, match=re.escape(
        "Failed to load Parameter 'dense0_weight' on [cpu(1)] because it was previous "
        "initialized on [cpu(0)]."
    )):
        dense.load_parameters(path, ctx=cpu(1))


def test_saving_an_uninitialized_or_deferred_net_raises(tmp_path):
    dense = nn.Dense(2)
    with pytest.raises(RuntimeError, match="^Parameter 'dense0_weight' has not been initialized"):
        dense.save_parameters(str(tmp_path / "a.st"))
    dense.initialize()
    with pytest.raises(DeferredInitializationError):
        dense.save_parameters(str(tmp_path / "a.st"))


def test_only_attribute_parameters_are_saved_constants_included(tmp_path):
    class Scaled(gluon.Block):
        def __init__(self):
            super().__init__()
            self.w = self.params.get("w", shape=(2,))
            self.scale = self.params.get_constant("scale", [2.0])
            self.params.get("unassigned", shape=(1,))

    block = Scaled()
    block.initialize()
    path = tmp_path / "scaled.st"
    block.save_parameters(str(path))
    assert sorted(load_file(path)) == ["scale", "w"]


def test_empty_block_and_empty_file(tmp_path):
    path = str(tmp_path / "empty.st")
    nn.Sequential().save_parameters(path)
    assert load_file(path) == {}
    nn.Sequential().load_parameters(path)


# ---- by name ---------------------------------------------------------------------------------
def named_net():
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(2, in_units=2))
    net.initialize()
    return net


def test_parameter_dict_save_strips_the_prefix(tmp_path):
    path = tmp_path / "named.st"
    net = named_net()
    net.collect_params().save(str(path), strip_prefix=net.prefix)
    assert sorted(load_file(path)) == ["dense0_bias", "dense0_weight"]


def test_a_name_without_the_prefix_to_strip_is_refused(tmp_path):
    with pytest.raises(ValueError, match=re.escape(
        "Prefix 'zzz_' is to be striped before saving, but Parameter's name "
        "'sequential0_dense0_weight' does not start with 'zzz_'. this may be due to your Block "
        "shares parameters from other Blocks or you forgot to use 'with name_scope()' when "
        "creating child blocks."
    )):
        named_net().collect_params().save(str(tmp_path / "x.st"), strip_prefix="zzz_")


def test_load_parameters_of_a_name_keyed_file_restores_the_prefix(tmp_path):
    path = str(tmp_path / "legacy.st")
    source = named_net()
    source.collect_params().save(path, strip_prefix=source.prefix)
    target = named_net()
    assert target.prefix == "sequential1_"
    target.load_parameters(path)
    np.testing.assert_array_equal(target[0].weight.data().asnumpy(),
                                  source[0].weight.data().asnumpy())


def test_parameter_dict_load_reports_missing_names(tmp_path):
    path = str(tmp_path / "full.st")
    named_net().collect_params().save(path)
    target = named_net()
    with pytest.raises(AssertionError, match=re.escape(
        f"Parameter 'sequential1_dense0_weight' is missing in file: {path}, which contains "
        "parameters: 'sequential0_dense0_weight', 'sequential0_dense0_bias'. Please make sure "
        "source and target networks have the same prefix."
    )):
        target.collect_params().load(path)


def test_parameter_dict_load_refuses_a_bad_restore_prefix(tmp_path):
    path = str(tmp_path / "full.st")
    named_net().collect_params().save(path)
    with pytest.raises(AssertionError, match=re.escape(
        "restore_prefix is 'nope_' but Parameters name 'sequential1_dense0_weight' does not "
        "start with 'nope_'."
    )):
        named_net().collect_params().load(path, restore_prefix="nope_")


def test_parameter_dict_load_reports_extra_names(tmp_path):
    path = str(tmp_path / "pd_extra.st")
    params = gluon.ParameterDict("p_")
    params.get("w", shape=(2,)).initialize(init.One())
    params.get("extra", shape=(2,)).initialize(init.One())
    params.save(path)
    target = gluon.ParameterDict("p_")
    target.get("w", shape=(2,))
    with pytest.raises(AssertionError, match=re.escape(
        f"Parameter 'p_extra' loaded from file: {path} is not present in ParameterDict, choices "
        "are: 'p_w'. Set ignore_extra to True to ignore. Please make sure source and target "
        "networks have the same prefix."
    )):
        target.load(path)
    target.load(path, ignore_extra=True)
    assert target["p_w"].data().asnumpy().tolist() == [1.0, 1.0]


def test_load_dict_drops_arg_and_aux_and_names_param_dict():
    params = gluon.ParameterDict("p_")
    params.get("w", shape=(2,))
    params.get("m", shape=(2,))
    params.load_dict({"arg:w": nd.ones((2,)), "aux:m": np.full(2, 2.0, dtype=np.float32)},
                     restore_prefix="p_")
    assert params["p_m"].data().asnumpy().tolist() == [2.0, 2.0]
    with pytest.raises(AssertionError, match=re.escape(
        "Parameter 'p_w' is missing in param_dict, which contains parameters: 'p_extra'."
    )):
        params.load_dict({"p_extra": nd.ones((2,))})


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.sampled_from(["float32", "float64"]))
def test_any_stack_of_dense_layers_round_trips(tmp_path, widths, dtype):
    def build():
        net = nn.Sequential(prefix="stack_")
        with net.name_scope():
            net.add(*(nn.Dense(w, in_units=2, dtype=dtype) for w in widths))
        net.initialize(init.Normal(1.0))
        return net

    path = str(tmp_path / "stack.st")
    source, target = build(), build()
    source.save_parameters(path)
    target.load_parameters(path)
    for a, b in zip(source.collect_params().values(), target.collect_params().values()):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy())
