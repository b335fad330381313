"""`nd.save`/`nd.load`, `Block.save`/`Block.load` and the legacy `save_params`/`load_params`,
against what MXNet 1.9.1 writes for the same models (`oracle/files.json`)."""

import json
import pathlib

import numpy as np
import pytest
from oracle.file_cases import BUILDERS
from safetensors.numpy import load_file

from paramstore import nd
from paramstore.gluon import nn
from paramstore.name import NameManager

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "files.json").read_text())


def built(name):
    with NameManager():
        return BUILDERS[name](nn)


# ---- nd.save / nd.load -----------------------------------------------------------------------
def test_a_dict_of_arrays_round_trips_with_names_and_dtypes(tmp_path):
    path = str(tmp_path / "d.safetensors")
    nd.save(path, {"w": nd.ones((2, 3)), "n": nd.array([1, 2], dtype=np.int64)})
    loaded = nd.load(path)
    assert sorted(loaded) == ["n", "w"]
    assert (loaded["w"].shape, loaded["n"].dtype) == ((2, 3), np.int64)


def test_a_list_and_a_single_array_load_as_lists(tmp_path):
    nd.save(str(tmp_path / "l"), [nd.ones((2,)), nd.ones((2,)) * 2])
    nd.save(str(tmp_path / "s"), nd.zeros((3,)))
    assert [a.asnumpy().tolist() for a in nd.load(str(tmp_path / "l"))] == [[1, 1], [2, 2]]
    (single,) = nd.load(str(tmp_path / "s"))
    assert single.shape == (3,)


def test_an_empty_dict_loads_as_an_empty_list_as_in_gluon(tmp_path):
    nd.save(str(tmp_path / "e"), {})
    assert nd.load(str(tmp_path / "e")) == []


def test_the_file_is_plain_safetensors(tmp_path):
    nd.save(str(tmp_path / "d"), {"w": nd.ones((2,))})
    assert load_file(str(tmp_path / "d"))["w"].tolist() == [1, 1]


@pytest.mark.parametrize("data, error, message", [
    ({1: nd.ones((1,))}, TypeError, "save only accept dict str->NDArray or list of NDArray"),
    ([1, 2], TypeError, "save only accept dict str->NDArray or list of NDArray"),
    ("abc", ValueError, "data needs to either be a NDArray"),
])
def test_what_is_not_arrays_is_refused_as_gluon_does_and_nothing_is_written(
        tmp_path, data, error, message):
    with pytest.raises(error, match=message):
        nd.save(str(tmp_path / "x"), data)
    assert not (tmp_path / "x").exists()


def test_reset_arrays_zeroes_every_array_in_place():
    a, b = nd.ones((3,)), nd.ones((2, 2))
    view = a[1:]
    nd.reset_arrays(a, b, num_arrays=2)
    assert a.asnumpy().tolist() == [0, 0, 0] and b.asnumpy().sum() == 0
    assert view.asnumpy().tolist() == [0, 0]


# ---- what save_parameters writes, seen through nd.load ---------------------------------------
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_nd_load_sees_the_keys_gluon_writes(tmp_path, name):
    net = built(name)
    net.save_parameters(str(tmp_path / "plain"))
    net.save_parameters(str(tmp_path / "dedup"), deduplicate=True)
    assert sorted(nd.load(str(tmp_path / "plain"))) == RECORDED[name]["save_parameters keys"]
    assert sorted(nd.load(str(tmp_path / "dedup"))) == RECORDED[name]["deduplicated keys"]


def test_a_tied_tensor_is_stored_once_but_loads_under_each_key(tmp_path):
    net = built("tied_mlp")
    net.save_parameters(str(tmp_path / "plain"))
    assert sorted(load_file(str(tmp_path / "plain"))) == ["0.bias", "0.weight", "1.bias",
                                                          "1.weight"]
    loaded = nd.load(str(tmp_path / "plain"))
    assert loaded["2.weight"].asnumpy().tolist() == loaded["1.weight"].asnumpy().tolist()


# ---- Block.save / Block.load -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_block_save_describes_the_model_as_gluon_does(tmp_path, name):
    built(name).save(str(tmp_path / name))
    written = json.loads((tmp_path / f"{name}-model.json").read_text())
    assert written == RECORDED[name]["model.json"]
    assert sorted(nd.load(str(tmp_path / f"{name}-model.params"))) == (
        RECORDED[name]["save_parameters keys"])


def test_block_load_restores_the_saved_names_and_values(tmp_path):
    source = built("nested_mlp")
    source.save(str(tmp_path / "m"))
    with NameManager():
        nn.Sequential()  # built again later: other automatic names
        target = BUILDERS["nested_mlp"](nn)
    assert target.name != source.name
    target.load(str(tmp_path / "m"))
    assert target.name == source.name
    assert sorted(target.collect_params().keys()) == RECORDED["nested_mlp"]["collect_params"]
    x = nd.ones((2, 3))
    assert target(x).asnumpy().tolist() == source(x).asnumpy().tolist()


def test_block_load_refuses_a_model_built_differently(tmp_path):
    built("nested_mlp").save(str(tmp_path / "m"))
    with pytest.raises(ValueError, match="built differently"):
        nn.Dense(2, in_units=3).load(str(tmp_path / "m"))


# ---- legacy save_params / load_params --------------------------------------------------------
def test_save_params_writes_names_without_the_prefix_and_warns(tmp_path):
    net = built("nested_mlp")
    with pytest.warns(UserWarning, match="save_params is deprecated"):
        net.save_params(str(tmp_path / "legacy"))
    assert sorted(nd.load(str(tmp_path / "legacy"))) == RECORDED["nested_mlp"]["save_params keys"]
    target = built("nested_mlp")
    with pytest.warns(UserWarning, match="load_params is deprecated"):
        target.load_params(str(tmp_path / "legacy"))
    x = nd.ones((1, 3))
    assert target(x).asnumpy().tolist() == net(x).asnumpy().tolist()


def test_save_params_of_blocks_outside_the_name_scope_is_refused():
    assert RECORDED["tied_mlp"]["save_params keys"] == "refused"
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="Using save_parameters"):
        built("tied_mlp").save_params("never-written")
