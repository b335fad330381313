"""Tags, `latest`, unpadded ids and retention policies through the SDK, on a real server."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from safetensors.numpy import load_file

from paramstore.client.errors import InvalidArgument, SnapshotNotFound


@pytest.fixture
def store(client):
    return client.create_store("run")


def snapshot_holding(store, value: float, **options):
    store.push({"w": np.full(4, value, np.float32)})
    return store.snapshot(**options)


def value_of(store) -> float:
    return float(store.collect_params()["w"].data().asnumpy()[0])


def test_an_unpadded_id_names_the_snapshot(store):
    first = snapshot_holding(store, 1.0)
    snapshot_holding(store, 2.0)
    store.restore("1")
    assert first.id == "00000001"
    assert value_of(store) == 1.0


def test_latest_names_the_newest_snapshot(store):
    snapshot_holding(store, 1.0)
    newest = snapshot_holding(store, 2.0)
    store.push({"w": np.full(4, 9.0, np.float32)})
    store.restore("latest")
    assert value_of(store) == 2.0
    assert store.snapshots()[-1].id == newest.id


def test_latest_of_a_store_without_snapshots_is_not_found(store):
    with pytest.raises(SnapshotNotFound, match="no snapshots"):
        store.restore("latest")


def test_a_snapshot_taken_with_tags_lists_them(store):
    info = snapshot_holding(store, 1.0, step=10, tags=["best", "candidate"])
    assert info.tags == ("best", "candidate")
    assert store.snapshots()[0].tags == ("best", "candidate")


def test_a_tag_names_its_snapshot_for_restore_and_export(store, tmp_path):
    snapshot_holding(store, 1.0, tags=["best"])
    snapshot_holding(store, 2.0)
    store.restore("best")
    assert value_of(store) == 1.0
    exported = store.export_snapshot("best", tmp_path / "best.safetensors")
    assert exported.id == "00000001"
    assert load_file(tmp_path / "best.safetensors")["w"][0] == 1.0


def test_tagging_moves_the_tag_from_the_snapshot_that_had_it(store):
    first = snapshot_holding(store, 1.0, tags=["best"])
    second = snapshot_holding(store, 2.0)
    moved = store.tag("latest", "best")
    assert moved.id == second.id and moved.tags == ("best",)
    assert {info.id: info.tags for info in store.snapshots()} == {
        first.id: (), second.id: ("best",)}


def test_untag_removes_the_tag_and_keeps_the_snapshot(store):
    snapshot_holding(store, 1.0, tags=["best"])
    store.untag("best")
    assert [info.tags for info in store.snapshots()] == [()]
    with pytest.raises(SnapshotNotFound, match="'best'"):
        store.restore("best")


def test_untagging_a_missing_tag_is_not_found(store):
    with pytest.raises(SnapshotNotFound, match="no tag 'best'"):
        store.untag("best")


@pytest.mark.parametrize("tag", ["7", "latest", "../x", ""])
def test_a_tag_that_could_not_name_a_snapshot_is_refused_and_nothing_is_written(store, tag):
    store.push({"w": np.zeros(4, np.float32)})
    with pytest.raises(InvalidArgument):
        store.snapshot(tags=[tag])
    assert store.snapshots() == []


def test_deleting_a_tagged_snapshot_drops_its_tag(store):
    snapshot_holding(store, 1.0, tags=["best"])
    snapshot_holding(store, 2.0)
    store.delete_snapshot("best")
    with pytest.raises(SnapshotNotFound):
        store.restore("best")
    store.tag("latest", "best")
    assert [info.tags for info in store.snapshots()] == [("best",)]


def test_tags_and_the_policy_survive_a_restart(make_server, tmp_path):
    server = make_server(data_dir=tmp_path / "kept")
    with server.connect() as client:
        store = client.create_store("run")
        snapshot_holding(store, 1.0, tags=["best"])
        snapshot_holding(store, 2.0, tags=["best"])
        store.tag("1", "first")
        store.untag("first")
        store.set_retention(keep_last=2, keep_best=1, metric="val_loss", mode="max")
    server.server.stop(None).wait()
    with make_server(data_dir=tmp_path / "kept").connect() as client:
        store = client.store("run")
        assert [info.tags for info in store.snapshots()] == [(), ("best",)]
        policy = store.retention()
        assert (policy.keep_last, policy.keep_best, policy.metric, policy.mode) == (
            2, 1, "val_loss", "max")
        assert not policy.server_default
        store.restore("best")
        assert value_of(store) == 2.0
    settings = sorted(path.relative_to(tmp_path / "kept") for path in
                      (tmp_path / "kept").rglob("*.json") if "snapshots" not in path.parts)
    assert len(settings) == 2, settings  # one record per setting: the superseded are gone


def test_retention_keeps_the_best_by_metric_and_the_newest(store, caplog):
    store.set_retention(keep_best=2, metric="val_loss", mode="min")
    losses = ["0.5", "0.2", "0.9", "0.1", "0.8"]
    with caplog.at_level(logging.INFO, logger="paramstore.server"):
        ids = [snapshot_holding(store, float(index), metadata={"val_loss": loss}).id
               for index, loss in enumerate(losses)]
    assert [info.id for info in store.snapshots()] == [ids[1], ids[3], ids[4]]
    deleted = [record.getMessage().rsplit(" ", 1)[1] for record in caplog.records
               if "retention deleted" in record.getMessage()]
    assert sorted(deleted) == [ids[0], ids[2]]


def test_retention_never_deletes_a_tagged_snapshot(store):
    store.set_retention(keep_last=1)
    tagged = snapshot_holding(store, 1.0, tags=["release"])
    ids = [snapshot_holding(store, float(value)).id for value in (2, 3)]
    assert [info.id for info in store.snapshots()] == [tagged.id, ids[-1]]


def test_retention_keeps_one_snapshot_every_m_steps(store):
    store.set_retention(keep_last=1, keep_every_steps=1000)
    for step in (500, 1000, 1500, 2000, 2500):
        snapshot_holding(store, float(step), step=step)
    assert [info.step for info in store.snapshots()] == [1000, 2000, 2500]


def test_a_store_without_a_policy_follows_the_server_default(make_server):
    with make_server(keep=2).connect() as client:
        store = client.create_store("run")
        policy = store.retention()
        assert policy.server_default and policy.keep_last == 2
        store.set_retention(keep_last=3)
        ids = [snapshot_holding(store, float(value)).id for value in range(4)]
        assert [info.id for info in store.snapshots()] == ids[1:]
        assert store.set_retention().server_default


@pytest.mark.parametrize("options", [
    {"keep_last": -1}, {"keep_best": 2}, {"keep_best": 1, "metric": "loss", "mode": "best"},
])
def test_a_bad_policy_is_refused_and_the_old_one_stays(store, options):
    store.set_retention(keep_last=4)
    with pytest.raises(InvalidArgument):
        store.set_retention(**options)
    assert store.retention().keep_last == 4
