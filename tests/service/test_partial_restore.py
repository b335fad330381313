"""Restore, export and import of the parameters a regex selects, on a real server."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from paramstore import checkpoint
from paramstore.client.errors import InvalidArgument, ParameterNotFound


def layers(value: float) -> dict[str, np.ndarray]:
    return {
        "dense0_weight": np.full((4, 3), value, np.float32),
        "dense0_bias": np.full(4, value, np.float32),
        "dense1_weight": np.full((2, 4), value, np.float32),
        "dense1_bias": np.full(2, value, np.float32),
    }


@pytest.fixture
def store(client):
    store = client.create_store("net")
    store.push(layers(1.0))
    store.snapshot(step=1)
    store.push(layers(2.0))
    return store


def values(store) -> dict[str, float]:
    return {name: float(param.data().asnumpy().flat[0])
            for name, param in store.collect_params().items()}


def test_a_selected_restore_leaves_every_other_parameter_as_it_is(store):
    store.restore("latest", select="dense0_")
    assert values(store) == {"dense0_weight": 1.0, "dense0_bias": 1.0,
                             "dense1_weight": 2.0, "dense1_bias": 2.0}


def test_a_selected_restore_keeps_the_ties_it_selects(client):
    store = client.create_store("tied")
    store.push(layers(1.0))
    store.push({"extra_bias": np.full(2, 5.0, np.float32)})
    store.tie("extra_bias", "dense1_bias")
    store.snapshot()
    store.untie("extra_bias")
    store.collect_params()["dense1_bias"].set_data(np.full(2, 9.0, np.float32))
    store.restore("latest", select="extra_bias")
    assert store.ties() == {"extra_bias": "dense1_bias"}
    assert values(store)["extra_bias"] == values(store)["dense1_bias"] == 1.0


def test_a_selection_of_nothing_is_not_found_and_changes_nothing(store):
    version = store.info().version
    with pytest.raises(ParameterNotFound, match="conv"):
        store.restore("latest", select="conv")
    assert store.info().version == version


def test_a_bad_regex_is_invalid_argument(store):
    with pytest.raises(InvalidArgument):
        store.restore("latest", select="(")


def test_a_selected_export_holds_only_the_selected_tensors(store, tmp_path):
    info = store.export_snapshot("latest", tmp_path / "dense1.safetensors", select="dense1_")
    loaded = load_file(tmp_path / "dense1.safetensors")
    assert sorted(loaded) == ["dense1_bias", "dense1_weight"]
    assert info.size_bytes == (tmp_path / "dense1.safetensors").stat().st_size
    assert loaded["dense1_weight"][0, 0] == 1.0


def test_a_selected_export_of_nothing_is_not_found_and_writes_no_file(store, tmp_path):
    exported = tmp_path / "conv.safetensors"
    with pytest.raises(ParameterNotFound, match="has no parameter matching 'conv'"):
        store.export_snapshot("latest", exported, select="conv")
    assert not exported.exists() and not list(tmp_path.glob(".conv*"))


def test_a_selected_import_creates_a_store_of_the_selected_tensors(client, tmp_path):
    path = tmp_path / "net.safetensors"
    checkpoint.save(path, layers(3.0))
    client.import_snapshot(path, store="head", select=".*bias")
    assert values(client.store("head")) == {"dense0_bias": 3.0, "dense1_bias": 3.0}


def test_a_selected_import_of_nothing_creates_no_store(client, tmp_path):
    path = tmp_path / "net.safetensors"
    checkpoint.save(path, layers(3.0))
    with pytest.raises(InvalidArgument, match="conv"):
        client.import_snapshot(path, store="none", select="conv")
    assert "none" not in client.list_stores()
