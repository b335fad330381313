"""A snapshot file damaged on disk (truncated, a flipped byte) is detected when the server
starts, reported with a WARNING naming the file, skipped in favour of the previous snapshot,
omitted from listings and never served: not restored, not exported."""

import logging
from pathlib import Path

import numpy as np
import pytest
from server_process import running_server
from storage_files import snapshot_path

from paramstore.client.errors import InvalidArgument


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))


def flip_a_header_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[12] ^= 0x40
    path.write_bytes(bytes(data))


def empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGES = [truncate, flip_a_data_byte, flip_a_header_byte, empty]


def two_snapshots(server):
    """A store "s" whose snapshot 1 holds zeros and snapshot 2 ones; returns their ids."""
    with server.connect() as client:
        store = client.create_store("s")
        store.push({"w": np.zeros(1000, np.float32)})
        first = store.snapshot(step=1)
        store.push({"w": np.ones(1000, np.float32)})
        return first.id, store.snapshot(step=2).id


def snapshot_file(server, snapshot_id):
    return snapshot_path(server.data_dir, "s", snapshot_id)


def restart(make_server, server):
    server.server.stop(None).wait()
    return make_server(data_dir=server.data_dir)


def restarted_with_damage(make_server, damage):
    """A server restarted after `damage` hit the latest of two snapshots; returns it with
    both snapshot ids."""
    server = make_server()
    ids = two_snapshots(server)
    damage(snapshot_file(server, ids[1]))
    return restart(make_server, server), ids


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_latest_snapshot_is_skipped_for_the_previous_one(make_server, damage):
    server, (first, _) = restarted_with_damage(make_server, damage)
    with server.connect() as client:
        store = client.store("s")
        np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), 0)
        assert [info.id for info in store.snapshots()] == [first]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_snapshot_is_reported_with_its_file_at_start(make_server, caplog, damage):
    server = make_server()
    _, latest = two_snapshots(server)
    damage(snapshot_file(server, latest))
    with caplog.at_level(logging.WARNING):
        restart(make_server, server)
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert any(str(snapshot_file(server, latest)) in message for message in warnings), warnings


def test_a_damaged_snapshot_is_neither_restored_nor_exported(make_server, tmp_path):
    server, (_, latest) = restarted_with_damage(make_server, flip_a_data_byte)
    with server.connect() as client:
        store = client.store("s")
        with pytest.raises(InvalidArgument, match="damaged"):
            store.restore(latest)
        with pytest.raises(InvalidArgument, match="damaged"):
            store.export_snapshot(latest, tmp_path / "out.safetensors")
        np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), 0)


def test_an_older_snapshot_found_damaged_by_a_restore_leaves_the_listing(make_server):
    server = make_server()
    first, latest = two_snapshots(server)
    flip_a_data_byte(snapshot_file(server, first))  # its header is sound: listed until read
    with server.connect() as client:
        store = client.store("s")
        with pytest.raises(InvalidArgument, match="damaged"):
            store.restore(first)
        assert [info.id for info in store.snapshots()] == [latest]
        np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), 1)


def test_snapshots_taken_after_a_damaged_one_get_new_ids(make_server):
    server, (first, latest) = restarted_with_damage(make_server, truncate)
    with server.connect() as client:
        store = client.store("s")
        taken = store.snapshot(step=3)
        assert int(taken.id) > int(latest)
        assert [info.id for info in store.snapshots()] == [first, taken.id]


def test_a_store_whose_every_snapshot_is_damaged_comes_back_empty(make_server):
    server = make_server()
    first, latest = two_snapshots(server)
    truncate(snapshot_file(server, first))
    empty(snapshot_file(server, latest))
    server = restart(make_server, server)
    with server.connect() as client:
        store = client.store("s")
        assert store.snapshots() == []
        assert store.info().parameter_count == 0


def test_paramstore_serve_logs_a_warning_naming_a_truncated_snapshot(tmp_path):
    with running_server(tmp_path / "data") as server:
        _, latest = two_snapshots(server)
        path = snapshot_file(server, latest)
        truncate(path)
        server.restart()
        warnings = [line for line in server.log if "WARNING" in line]
        assert any(str(path) in line for line in warnings), server.log
