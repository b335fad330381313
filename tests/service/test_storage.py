"""The storage layer against its interface: the backend's verbs and the commit protocol.

Every test takes a `backend` fixture, so that another backend runs the same suite unchanged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from paramstore import checkpoint
from paramstore import optimizer as opt
from paramstore.server.errors import (
    AlreadyExists,
    InvalidArgument,
    ResourceExhausted,
    SnapshotNotFound,
    StorageUnavailable,
    StoreNotFound,
)
from paramstore.server.storage import Backend, BackendError, Catalog, Contents, LocalBackend
from paramstore.server.stores import AppliedStep, Incoming, ParameterInfo, Store


@pytest.fixture
def make_backend(storage) -> Callable[[], Backend]:
    """Backends over the same place, each backend in turn: a second one is the storage a
    restarted server sees."""
    return storage.make_backend


@pytest.fixture
def backend(make_backend) -> Backend:
    return make_backend()


@pytest.fixture
def local(tmp_path) -> LocalBackend:
    """For what only a local folder can show: hidden files, symbolic links."""
    return LocalBackend(tmp_path / "data")


def test_a_file_as_the_data_folder_is_refused_saying_it_is_a_file(tmp_path):
    taken = tmp_path / "paramstore-data"
    taken.write_text("notes")
    with pytest.raises(BackendError, match="data folder: it is a file, not a folder$"):
        LocalBackend(taken)
    assert taken.read_text() == "notes"


def param(name: str, array: np.ndarray) -> Incoming:
    return Incoming(ParameterInfo(name, array.shape, array.dtype.name, array.dtype.name), array)


def store_with(value: float, size: int = 100) -> Store:
    store = Store("s")
    store.push("", [param("w", np.full(size, value, np.float32))])
    return store


def value_of(contents: Contents) -> float:
    (value,) = np.unique(contents.state.array("w"))
    return float(value)


def produce_bytes(data: bytes) -> Callable[[str], None]:
    def produce(path: str) -> None:
        Path(path).write_bytes(data)
    return produce


# ---- the backend's verbs ----------------------------------------------------------------------


def test_create_is_exclusive_when_writers_race(backend):
    wins = []
    barrier = threading.Barrier(8)

    def race(index: int) -> None:
        barrier.wait()
        wins.append((index, backend.create("records/one", f"writer {index}".encode())))

    threads = [threading.Thread(target=race, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [index for index, won in wins if won]
    assert backend.read("records/one") == f"writer {winner}".encode()


def test_a_write_that_fails_leaves_no_object(backend):
    def fail(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        backend.write("data/x", fail)
    assert backend.list("data") == []


def test_listing_hides_files_being_written_and_partial_writes_are_removed(local, tmp_path):
    local.write("d/kept", produce_bytes(b"1"))
    (tmp_path / "data" / "d" / ".tmpABC123").write_bytes(b"partial")
    assert local.list("d") == ["d/kept"]
    local.remove_partial_writes("d")
    assert sorted(os.listdir(tmp_path / "data" / "d")) == ["kept"]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b", "white space", "a\0b"])
def test_a_key_that_could_escape_is_refused(backend, key):
    with pytest.raises(ValueError, match="invalid storage key"):
        backend.create(key, b"x")


def test_a_symbolic_link_in_the_data_folder_is_never_followed(local, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "data" / "linked").symlink_to(elsewhere)
    with pytest.raises(OSError, match="symbolic link"):
        local.create("linked/x", b"x")
    assert list(elsewhere.iterdir()) == []


# ---- the commit protocol ----------------------------------------------------------------------


def test_concurrent_snapshots_get_ids_in_the_order_of_the_states_they_hold(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    store = store_with(0.0)
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()

    def write_and_snapshot(worker: int) -> None:
        for round_ in range(10):
            with lock:  # one writer at a time, snapshots racing freely
                store.push("", [param("w", np.full(100, worker * 100 + round_, np.float32))])
            info = catalog.take_snapshot("s", lambda: Contents(*store.capture()))
            acknowledged[info.id] = info.version

    threads = [threading.Thread(target=write_and_snapshot, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = [acknowledged[snapshot_id] for snapshot_id in sorted(acknowledged)]
    assert versions == sorted(versions), "a later id holds an older state"
    reopened = Catalog(make_backend())
    recovered = reopened.open_store("s")
    assert recovered is not None
    np.testing.assert_array_equal(recovered.state.array("w"), store.state().array("w"))


def test_a_snapshot_a_reader_would_refuse_is_refused_before_retention_deletes_anything(
        make_backend):
    catalog = Catalog(make_backend(), keep=1)
    catalog.create_store("s")
    good = catalog.take_snapshot("s", lambda: Contents(store_with(1.0).state()))
    huge = Store("s")  # names long and many enough for a header past the readers' limit
    huge.push("", [param(f"{index:06d}" + "n" * 990, np.zeros(1, np.uint8))
                   for index in range(40_000)])
    with pytest.raises(ResourceExhausted, match="100000000-byte limit"):
        catalog.take_snapshot("s", lambda: Contents(huge.state()))
    assert [info.id for info in catalog.snapshots("s")] == [good.id]
    reopened = Catalog(make_backend(), keep=1)
    assert value_of(reopened.open_store("s")) == 1.0
    assert [info.id for info in reopened.snapshots("s")] == [good.id]


def test_a_deleted_store_stays_deleted_and_its_name_starts_afresh(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    catalog.take_snapshot("s", lambda: Contents(store_with(1.0).state()))
    catalog.delete_store("s")
    with pytest.raises(StoreNotFound):
        catalog.snapshots("s")
    assert Catalog(make_backend()).open_store("s") is None
    catalog.create_store("s")
    assert catalog.snapshots("s") == []
    assert catalog.take_snapshot("s", lambda: Contents(store_with(2.0).state())).id == "00000001"
    assert value_of(Catalog(make_backend()).open_store("s")) == 2.0


def test_a_snapshot_in_flight_during_a_delete_gives_up_and_leaves_nothing(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    pending = catalog.begin_snapshot("s", lambda: Contents(store_with(1.0).state()))
    deleting = threading.Thread(target=catalog.delete_store, args=("s",))
    deleting.start()
    deleting.join(timeout=0.3)
    assert deleting.is_alive(), "the delete must wait for the snapshot in flight"
    with pytest.raises(StoreNotFound, match="deleted meanwhile"):
        catalog.finish_snapshot(pending)
    deleting.join(timeout=10)
    assert not deleting.is_alive()
    assert make_backend().list("stores/s") == []


def test_a_delete_that_cannot_commit_its_tombstone_is_an_error_and_changes_nothing(
        local, tmp_path):
    catalog = Catalog(local)
    catalog.create_store("s")
    catalog.take_snapshot("s", lambda: Contents(store_with(1.0).state()))
    folder = tmp_path / "data" / "stores" / "s"
    folder.rename(tmp_path / "moved")
    folder.symlink_to(tmp_path / "moved")
    with pytest.raises(StorageUnavailable, match="symbolic link"):
        catalog.delete_store("s")
    assert [info.id for info in catalog.snapshots("s")] == ["00000001"]


def test_a_failed_import_leaves_nothing_and_a_retry_succeeds(make_backend):
    catalog = Catalog(make_backend())
    with pytest.raises(InvalidArgument, match="not a valid safetensors file"):
        catalog.import_store("s", produce_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"))
    assert make_backend().list("stores/s") == []
    data = checkpoint.dumps({"w": np.full(10, 7.0, np.float32)})
    info, contents = catalog.import_store("s", produce_bytes(data))
    assert info.id == "00000001" and value_of(contents) == 7.0
    with pytest.raises(AlreadyExists):
        catalog.import_store("s", produce_bytes(data))
    assert value_of(Catalog(make_backend()).open_store("s")) == 7.0


def test_what_a_crash_left_uncommitted_is_removed_when_the_store_is_opened(local, tmp_path):
    catalog = Catalog(local)
    catalog.create_store("s")
    catalog.take_snapshot("s", lambda: Contents(store_with(1.0).state()))
    (incarnation,) = (tmp_path / "data" / "stores" / "s").iterdir()
    (incarnation / "data" / "00000002.abcd.safetensors").write_bytes(b"never committed")
    (incarnation / "data" / ".tmpXYZ").write_bytes(b"half written")
    staged = tmp_path / "data" / "stores" / "t" / f"{1:020d}" / "data"
    staged.mkdir(parents=True)
    (staged / "00000001.ab.safetensors").write_bytes(b"an import never committed")
    reopened = Catalog(LocalBackend(tmp_path / "data"))
    assert value_of(reopened.open_store("s")) == 1.0
    (kept,) = (incarnation / "data").iterdir()
    assert kept.name.startswith("00000001.")
    assert reopened.open_store("t") is None
    assert not (tmp_path / "data" / "stores" / "t").exists()
    assert reopened.take_snapshot("s", lambda: Contents(store_with(2.0).state())).id == "00000002"


def test_the_optimizer_state_is_committed_and_restored_with_the_weights(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    store = store_with(1.0)
    store.optimizer = opt.create("sgd", learning_rate=0.5, momentum=0.9)
    store.update(lambda state: {"w": _stepped(store.optimizer, state.array("w"))})
    info = catalog.take_snapshot("s", lambda: Contents(*store.capture()))
    restored = catalog.read_snapshot("s", info.id)
    assert restored.optimizer is not None
    for name, array in store.optimizer.get_states().items():
        np.testing.assert_array_equal(restored.optimizer.get_states()[name], array)
    assert Catalog(make_backend()).open_store("s").optimizer is not None


def test_the_workers_last_steps_are_committed_with_the_state_they_produced(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    store = store_with(1.0)
    store.push("", [param("v", np.zeros(3, np.float32))])
    store.update(lambda state: {"w": state.array("w") + 1}, {0: 7, 1: 7})
    store.update(lambda state: {"v": state.array("v") + 1}, {0: 7})  # rank 1 not there yet
    catalog.take_snapshot("s", lambda: Contents(*store.capture()))
    store.update(lambda state: {"v": state.array("v") + 1}, {1: 7})  # after the snapshot
    recovered = Catalog(make_backend()).open_store("s")
    assert recovered is not None
    assert recovered.steps == {0: AppliedStep(7, frozenset({"w", "v"})),
                               1: AppliedStep(7, frozenset({"w"}))}
    assert value_of(Contents(recovered.state)) == 2.0


def _stepped(optimizer: opt.Optimizer, weight: np.ndarray) -> np.ndarray:
    weight = np.array(weight, copy=True)
    optimizer.update("w", weight, np.ones_like(weight))
    return weight


def test_a_restored_state_maps_its_data_instead_of_copying_it(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    info = catalog.take_snapshot("s", lambda: Contents(store_with(3.0, size=1 << 20).state()))
    array = catalog.read_snapshot("s", info.id).state.array("w")
    assert not array.flags.owndata and not array.flags.writeable
    assert float(array[12345]) == 3.0


def test_deleting_a_snapshot_removes_its_record_and_data(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    first = catalog.take_snapshot("s", lambda: Contents(store_with(1.0).state()))
    catalog.delete_snapshot("s", first.id)
    with pytest.raises(SnapshotNotFound):
        catalog.delete_snapshot("s", first.id)
    assert [key.rsplit("/", 1)[1] for key in make_backend().list("stores/s")] == ["created"]


def test_a_damaged_commit_record_is_skipped_and_its_data_kept_for_inspection(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    catalog.take_snapshot("s", lambda: Contents(store_with(1.0).state()))
    second = catalog.take_snapshot("s", lambda: Contents(store_with(2.0).state()))
    backend = make_backend()
    (record,) = [key for key in backend.list("stores/s") if key.endswith(f"/{second.id}.json")]
    backend.delete(record)
    backend.create(record, b"{not json")
    reopened = Catalog(make_backend())
    assert value_of(reopened.open_store("s")) == 1.0
    assert [info.id for info in reopened.snapshots("s")] == ["00000001"]
    assert any(f"/data/{second.id}." in key for key in backend.list("stores/s"))
    third = reopened.take_snapshot("s", lambda: Contents(store_with(3.0).state()))
    assert int(third.id) > int(second.id)  # a damaged record's id is never reused


def test_a_delta_whose_base_record_is_gone_is_skipped_and_never_served(make_backend):
    catalog = Catalog(make_backend())
    catalog.create_store("s")
    store = store_with(1.0)
    catalog.take_snapshot("s", lambda: Contents(store.state()))
    store.push("", [param("w", np.full(100, 2.0, np.float32))])
    delta = catalog.finish_snapshot(
        catalog.begin_snapshot("s", lambda: Contents(store.state()), delta=True))
    assert delta.base == "00000001"
    catalog.take_snapshot("s", lambda: Contents(store_with(3.0).state()))
    backend = make_backend()
    (base,) = [key for key in backend.list("stores/s") if key.endswith(f"/{delta.base}.json")]
    backend.delete(base)  # as a crash amid an older server's retention could leave it
    reopened = Catalog(make_backend())
    assert value_of(reopened.open_store("s")) == 3.0
    assert [info.id for info in reopened.snapshots("s")] == ["00000003"]
    with pytest.raises(InvalidArgument, match="damaged"):
        reopened.read_snapshot("s", delta.id)
    reopened.delete_snapshot("s", delta.id)
