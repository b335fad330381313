"""The commit protocol killed at each of its named steps, on purpose.

Random kills rarely land inside a commit, so every step in `COMMIT_STEPS` gets its own run: a
server started with the crash hook at that step plays one script of every mutating operation
(create, a retention policy, delta snapshots whose retention must keep their base, snapshots
with retention and tags, delete-snapshot, tag, untag, import, delete-store) until the hook
kills it there. The delta snapshots come first, on a store snapshotted before the hook was
set, so that every snapshot and retention step is first reached inside a delta snapshot. The
hook's mark proves the step was reached. After a restart without the hook, the stores keep
every promise (`crash_model.check`), a retried import finds no phantom store, and no
uncommitted byte is left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from crash_model import StoreModel, check
from server_process import ServerProcess
from storage_files import assert_no_leftovers

from paramstore import checkpoint
from paramstore.client import Client
from paramstore.client.errors import ParamstoreError
from paramstore.server.storage import COMMIT_STEPS

KEEP = 2  # snapshots kept per store, so that the third one runs retention
IMPORTED = 7.0


def prepare(client: Client, c: StoreModel) -> None:
    """Store "c", two full snapshots: the bases of the deltas `play` takes."""
    c.begin("create")
    store = client.create_store("c")
    c.created = True
    for value in (1.0, 2.0):
        store.push({"w": np.full(1000, value, np.float32),
                    "frozen": np.zeros(1000, np.float32)})
        c.begin("snapshot", value)
        c.snapshot_taken(store.snapshot(step=int(value)).id, value)


def play(client: Client, import_file: Path, a: StoreModel, b: StoreModel,
         c: StoreModel) -> None:
    """Every mutating operation once, recording each acknowledgement; stops when killed."""
    a.begin("create")
    store = client.create_store("a")
    a.created = True
    a.done()
    deltas = client.store("c")
    for value in (3.0, 4.0):  # the first deletes 1; the second keeps 2, the base of 3
        deltas.set_data("w", np.full(1000, value, np.float32))  # "frozen" stays
        c.begin("snapshot", value)
        info = deltas.snapshot(step=int(value), delta=True)
        assert info.base, "a delta snapshot with a base to build on was taken in full"
        c.snapshot_taken(info.id, value, info.base)
    a.begin("retention-policy")
    # The same keep as the server's, and a period no step meets: only the record changes.
    store.set_retention(keep_last=KEEP, keep_every_steps=1000)
    a.keep_every_steps = 1000
    a.done()
    for value in (1.0, 2.0, 3.0):
        tags = ("best",) if value == 2.0 else ()
        store.push({"w": np.full(1000, value, np.float32)})
        a.begin("snapshot", value, tags=tags)
        snapshot_id = store.snapshot(step=int(value), tags=tags).id
        a.tags.update(dict.fromkeys(tags, snapshot_id))
        a.snapshot_taken(snapshot_id, value)
    doomed = sorted(a.snapshots)[0]
    a.begin("delete-snapshot", target=doomed)
    store.delete_snapshot(doomed)
    a.snapshot_deleted(doomed)
    newest = max(a.snapshots)
    for tag, target in (("best", newest), ("best", None)):
        a.begin("tag", tags=(tag,))
        if target is None:
            store.untag(tag)
        else:
            store.tag(target, tag)
        a.tagged(tag, target)
    b.begin("import", IMPORTED)
    client.import_snapshot(import_file, store="b")
    b.created = True
    b.snapshot_taken("00000001", IMPORTED)
    a.begin("delete")
    client.delete_store("a")
    a.deleted = True
    a.done()


# Every step on the local folder; on S3, in make test, a step of each kind the S3 backend
# recovers from (a record committed or superseded, data uploaded without its record, a record
# deleted before its data, a tombstone, data removed after it); every step on S3 in make soak.
S3_STEPS_IN_MAKE_TEST = {"create.committed", "snapshot.data-written", "snapshot.committed",
                         "retention.record-deleted", "tag.superseded-removed",
                         "delete.tombstoned", "delete.data-removed", "import.data-written"}
STEPS_ON_EACH_STORAGE = [
    pytest.param(storage, step, id=f"{storage}-{step}",
                 marks=pytest.mark.slow if storage == "s3" and step not in S3_STEPS_IN_MAKE_TEST
                 else ())
    for storage in ("local", "s3") for step in COMMIT_STEPS]


@pytest.mark.parametrize("storage, step", STEPS_ON_EACH_STORAGE, indirect=["storage"])
def test_a_kill_at_each_commit_step_loses_nothing_acknowledged(step, storage, tmp_path):
    import_file = tmp_path / "import.safetensors"
    checkpoint.save(import_file, {"w": np.full(1000, IMPORTED, np.float32)})
    mark, armed = tmp_path / "reached", tmp_path / "armed"
    # The hook is armed once "c" is prepared: one server process makes it, then plays.
    server = ServerProcess(storage.data_dir, ("--keep", str(KEEP), *storage.flags),
                           env={"PARAMSTORE_CRASH_AT": step, "PARAMSTORE_CRASH_MARK": str(mark),
                                "PARAMSTORE_CRASH_ARMED": str(armed)})
    a, b, c = (StoreModel(name, keep=KEEP) for name in ("a", "b", "c"))
    try:
        with server.start().connect(timeout=30) as client:
            prepare(client, c)
            armed.touch()
            try:
                play(client, import_file, a, b, c)
            except ParamstoreError:
                pass  # the hook killed the server under this call
    finally:
        server.kill()
    assert mark.read_text() == step, f"the script never reached {step}"
    assert a.in_flight or b.in_flight or c.in_flight, "the server survived the whole script"

    restarted = ServerProcess(storage.data_dir, storage.flags)
    try:
        restarted.start()
        with restarted.connect() as client:
            listed = client.list_stores()
            for model in (a, b, c):
                check(client, model, listed)
            if b.in_flight == "import" and "b" not in listed:  # no phantom refuses a retry
                client.import_snapshot(import_file, store="b")
    finally:
        restarted.kill()
    for store in ("a", "b", "c"):
        assert_no_leftovers(storage.make_backend(), store)


def test_a_kill_amid_retention_leaves_no_delta_without_its_base(storage, tmp_path):
    """Retention dooms a delta and its base at once; killed after its first deletion, the
    server must not keep the delta and lose the base."""
    mark = tmp_path / "reached"
    flags = ("--keep", "1", *storage.flags)
    server = ServerProcess(storage.data_dir, flags, env={
        "PARAMSTORE_CRASH_AT": "retention.record-deleted", "PARAMSTORE_CRASH_MARK": str(mark)})
    model = StoreModel("s", keep=1)
    try:
        with server.start().connect(timeout=30) as client:
            model.begin("create")
            store = client.create_store("s")
            model.created = True
            store.push({"w": np.full(1000, 1.0, np.float32), "u": np.zeros(1000, np.float32)})
            model.begin("snapshot", 1.0)
            model.snapshot_taken(store.snapshot().id, 1.0)
            store.set_data("w", np.full(1000, 2.0, np.float32))
            model.begin("snapshot", 2.0)
            info = store.snapshot(delta=True)  # kept with its base: nothing deleted yet
            model.snapshot_taken(info.id, 2.0, info.base)
            store.set_data("w", np.full(1000, 3.0, np.float32))
            model.begin("snapshot", 3.0)
            with pytest.raises(ParamstoreError):
                store.snapshot()  # dooms both; the hook kills the server after one deletion
    finally:
        server.kill()
    assert mark.read_text() == "retention.record-deleted"
    assert model.bases == {"00000002": "00000001"}

    restarted = ServerProcess(storage.data_dir, storage.flags)
    try:
        with restarted.start().connect() as client:
            check(client, model, client.list_stores())
    finally:
        restarted.kill()
    assert_no_leftovers(storage.make_backend(), "s")
