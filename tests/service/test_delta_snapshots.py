"""Delta snapshots on a real server: only changed tensors stored, the full state restored."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file
from storage_files import snapshot_path

from paramstore.client.errors import FailedPrecondition


def frozen_and_head(head: float) -> dict[str, np.ndarray]:
    return {"body_weight": np.full((64, 64), 7.0, np.float32),
            "head_weight": np.full((4, 64), head, np.float32)}


@pytest.fixture
def store(client):
    store = client.create_store("tune")
    store.push(frozen_and_head(1.0))
    store.snapshot(step=1)
    store.collect_params()["head_weight"].set_data(np.full((4, 64), 2.0, np.float32))
    return store


def test_a_delta_snapshot_stores_only_the_changed_tensors(store, server):
    info = store.snapshot(step=2, delta=True)
    stored = load_file(snapshot_path(server.data_dir, "tune", info.id))
    assert info.base == "00000001"
    assert sorted(stored) == ["head_weight"]
    assert info.size_bytes < store.snapshots()[0].size_bytes / 4


def test_a_delta_snapshot_restores_the_full_state(store):
    store.snapshot(delta=True)
    store.push(frozen_and_head(9.0))
    store.restore("latest")
    params = store.collect_params()
    assert params["body_weight"].data().asnumpy()[0, 0] == 7.0
    assert params["head_weight"].data().asnumpy()[0, 0] == 2.0


def test_a_delta_of_a_delta_restores_the_full_state(store):
    store.snapshot(delta=True)
    store.collect_params()["head_weight"].set_data(np.full((4, 64), 3.0, np.float32))
    third = store.snapshot(delta=True)
    store.restore("1")
    store.restore(third.id)
    assert store.collect_params()["head_weight"].data().asnumpy()[0, 0] == 3.0
    assert third.base == "00000002"


def test_an_exported_delta_is_a_full_plain_file(store, tmp_path):
    info = store.snapshot(delta=True)
    exported = store.export_snapshot(info.id, tmp_path / "full.safetensors")
    loaded = load_file(tmp_path / "full.safetensors")
    assert sorted(loaded) == ["body_weight", "head_weight"] and exported.base is None
    assert loaded["head_weight"][0, 0] == 2.0


def test_a_base_that_a_delta_needs_cannot_be_deleted(store):
    store.snapshot(delta=True)
    with pytest.raises(FailedPrecondition, match="base of delta snapshot 00000002"):
        store.delete_snapshot("1")
    store.delete_snapshot("2")
    store.delete_snapshot("1")
    assert store.snapshots() == []


def test_retention_keeps_the_base_of_a_kept_delta(store):
    store.set_retention(keep_last=1)
    delta = store.snapshot(delta=True)
    assert [info.id for info in store.snapshots()] == ["00000001", delta.id]
    store.snapshot()  # a full one: the delta and its base may go
    assert [info.id for info in store.snapshots()] == ["00000003"]


def test_a_delta_without_a_previous_snapshot_is_full(client):
    store = client.create_store("fresh")
    store.push(frozen_and_head(1.0))
    info = store.snapshot(delta=True)
    assert info.base is None


def test_deltas_survive_a_restart(make_server, tmp_path):
    server = make_server(data_dir=tmp_path / "kept")
    with server.connect() as client:
        store = client.create_store("tune")
        store.push(frozen_and_head(1.0))
        store.snapshot()
        store.collect_params()["head_weight"].set_data(np.full((4, 64), 2.0, np.float32))
        store.snapshot(delta=True)
    server.server.stop(None).wait()
    with make_server(data_dir=tmp_path / "kept").connect() as client:
        store = client.store("tune")
        assert store.collect_params()["head_weight"].data().asnumpy()[0, 0] == 2.0
        store.collect_params()["head_weight"].set_data(np.full((4, 64), 3.0, np.float32))
        info = store.snapshot(delta=True)  # the recovered arrays are the base's
        assert info.base == "00000002"
        assert info.size_bytes < store.snapshots()[0].size_bytes / 4
