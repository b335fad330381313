"""`store.diff(a, b)` and `paramstore diff`: what changed between two snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from paramstore.client.cli import main
from paramstore.client.errors import SnapshotNotFound
from paramstore.server.diff import diff
from paramstore.server.stores import Incoming, Store, validated_info


def pushed(store: Store, **arrays: np.ndarray) -> None:
    store.push("", [Incoming(validated_info(name, array.shape, array.dtype.name,
                                            array.dtype.name, "Parameter", None, 1 << 40), array)
                    for name, array in arrays.items()])


def test_each_status_is_reported_with_its_norms():
    before, after = Store("a"), Store("b")
    pushed(before, same=np.ones(3, np.float32), moved=np.array([3.0, 4.0], np.float32),
           gone=np.zeros(2, np.float32), grown=np.zeros(2, np.float32))
    pushed(after, same=np.ones(3, np.float32), moved=np.array([3.0, 0.0], np.float32),
           grown=np.zeros(3, np.float32), new=np.zeros(1, np.float32))
    records = {record.name: record for record in diff(before.state(), after.state())}
    assert {name: record.status for name, record in records.items()} == {
        "same": "unchanged", "moved": "changed", "gone": "removed", "grown": "reshaped",
        "new": "added"}
    assert records["moved"].l2 == pytest.approx(4.0)
    assert records["moved"].relative == pytest.approx(4.0 / 5.0)
    assert records["same"].l2 == 0.0 and records["gone"].l2 is None


def test_a_nan_that_stays_is_unchanged():
    before, after = Store("a"), Store("b")
    pushed(before, w=np.array([np.nan, 1.0], np.float32))
    pushed(after, w=np.array([np.nan, 1.0], np.float32))
    assert diff(before.state(), after.state())[0].status == "unchanged"


@pytest.fixture
def trained(client):
    store = client.create_store("train")
    store.push({"w": np.array([3.0, 4.0], np.float32), "b": np.zeros(2, np.float32)})
    store.snapshot(step=1)
    store.collect_params()["w"].set_data(np.array([3.0, 0.0], np.float32))
    store.push({"b2": np.zeros(2, np.float32)})
    store.tie("b2", "b")
    store.snapshot(step=2)
    return store


def test_the_sdk_diff_takes_any_snapshot_name_and_reports_ties(trained):
    records = {record.name: record for record in trained.diff("1", "latest")}
    assert records["w"].status == "changed" and records["w"].l2 == pytest.approx(4.0)
    assert records["b"].status == "unchanged" and records["b"].relative is None
    assert records["b2"].status == "added" and records["b2"].tie_b == "b"


def test_the_diff_prints_as_a_table(trained):
    lines = str(trained.diff("1", "2")).splitlines()
    assert lines[0].split() == ["PARAMETER", "STATUS", "L2", "RELATIVE", "TIES"]
    assert lines[1].split() == ["w", "changed", "4", "0.8"]
    assert lines[3].split() == ["b2", "added", "-", "-", "-", "->", "b"]


def test_the_cli_prints_the_table(trained, server, capsys, monkeypatch):
    monkeypatch.setenv("PARAMSTORE_ADDRESS", server.address)
    assert main(["diff", "train", "1", "latest"]) == 0
    assert capsys.readouterr().out == str(trained.diff("1", "latest")) + "\n"


def test_a_missing_snapshot_is_not_found(trained):
    with pytest.raises(SnapshotNotFound):
        trained.diff("1", "9")
