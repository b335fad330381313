"""SIGKILL at random moments while threads mix every mutating operation, then restart and check.

Each thread works its own stores: push, set_data, tie, untie, snapshot (full or delta, with
retention), tag, untag, restore, delete-snapshot, delete-store and create, import. Every
acknowledgement goes into a `StoreModel`; after each kill and restart `crash_model.check` holds
every store to its promises, no store exists that no thread asked for, and no uncommitted byte
is left.
`make soak` runs 50 kills; the normal suite a few.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from crash_model import StoreModel, check
from server_process import running_server
from service_types import Storage
from storage_files import assert_no_leftovers

from paramstore import checkpoint
from paramstore.client import Client, connect
from paramstore.client.errors import ParamstoreError

KEEP = 3
TAGS = ("best", "release")  # a tagged snapshot outlives retention
LANES = 3
LONGEST_LIFE_SECONDS = 0.6
SIZE = 64 << 10  # floats: 256 KiB a tensor, so that snapshots take a little while


class Lane(threading.Thread):
    """One client thread and the stores it made, until the server dies under it."""

    def __init__(self, address: str, prefix: str, seed: int, folder: Path) -> None:
        super().__init__(daemon=True)
        self.address, self.prefix, self.folder = address, prefix, folder
        self.chance = random.Random(seed)
        self.models: list[StoreModel] = []
        self.value = 0.0
        self.tied = False

    def run(self) -> None:
        try:
            with connect(self.address, timeout=30) as client:
                self._create(client)
                while True:
                    self._step(client)
        except ParamstoreError:
            return  # killed under a call, as intended

    @property
    def model(self) -> StoreModel:
        return self.models[-1]

    def _new_model(self) -> StoreModel:
        self.models.append(StoreModel(f"{self.prefix}-{len(self.models)}", keep=KEEP))
        return self.model

    def _create(self, client: Client) -> None:
        model = self._new_model()
        model.begin("create")
        client.create_store(model.name)
        model.created = True
        model.done()
        self._push(client)

    def _push(self, client: Client) -> None:
        self.value += 1
        store = client.store(self.model.name)
        store.push({"w": np.full(SIZE, self.value, np.float32),
                    "u": np.zeros(SIZE, np.float32)} if not self.tied else
                   {"w": np.full(SIZE, self.value, np.float32)})

    def _step(self, client: Client) -> None:
        model, store = self.model, client.store(self.model.name)
        operation = self.chance.choice([
            "push", "push", "set_data", "tie", "untie", "snapshot", "snapshot", "snapshot",
            "tag", "untag", "restore", "delete-snapshot", "delete", "import"])
        if operation == "push":
            self._push(client)
        elif operation == "set_data":
            self.value += 1
            store.set_data("w", np.full(SIZE, self.value, np.float32))
        elif operation == "tie" and not self.tied:
            store.tie("u", "w")
            self.tied = True
        elif operation == "untie" and self.tied:
            store.untie("u")
            self.tied = False
        elif operation == "snapshot":
            model.begin("snapshot", self.value)
            # A delta stores only what changed: after a set_data, "w" alone.
            info = store.snapshot(delta=self.chance.random() < 0.5)
            model.snapshot_taken(info.id, self.value, info.base)
        elif operation == "tag" and model.snapshots:
            tag, snapshot_id = self.chance.choice(TAGS), self.chance.choice(sorted(model.snapshots))
            model.begin("tag", tags=(tag,))
            store.tag(snapshot_id, tag)
            model.tagged(tag, snapshot_id)
        elif operation == "untag" and model.tags:
            tag = self.chance.choice(sorted(model.tags))
            model.begin("tag", tags=(tag,))
            store.untag(tag)
            model.tagged(tag, None)
        elif operation == "restore" and model.snapshots:
            snapshot_id = self.chance.choice(sorted(model.snapshots))
            store.restore(snapshot_id)
            self.value = model.snapshots[snapshot_id]
            self.tied = "u" in store.ties()
        elif operation == "delete-snapshot" and model.deletable():
            snapshot_id = self.chance.choice(model.deletable())
            model.begin("delete-snapshot", target=snapshot_id)
            store.delete_snapshot(snapshot_id)
            model.snapshot_deleted(snapshot_id)
        elif operation == "delete":
            model.begin("delete")
            client.delete_store(model.name)
            model.deleted = True
            model.done()
            self.tied = False
            self._create(client)
        elif operation == "import":
            self.value += 1
            path = self.folder / f"{self.prefix}-{len(self.models)}.safetensors"
            checkpoint.save(path, {"w": np.full(SIZE, self.value, np.float32)})
            imported = self._new_model()
            imported.begin("import", self.value)
            client.import_snapshot(path, store=imported.name)
            imported.created = True
            imported.snapshot_taken("00000001", self.value)
            self.tied = False


def run_mixed_kills(storage: Storage, folder: Path, kills: int, seed: int) -> dict[str, int]:
    chance = random.Random(seed)
    models: list[StoreModel] = []
    counts = {"kills": 0, "acknowledged snapshots": 0, "delta snapshots": 0, "stores": 0}
    backend = storage.make_backend()
    with running_server(storage.data_dir, "--keep", str(KEEP), *storage.flags) as server:
        for kill in range(kills):
            lanes = [Lane(server.address, f"k{kill}l{index}", chance.randrange(1 << 30), folder)
                     for index in range(LANES)]
            for lane in lanes:
                lane.start()
            time.sleep(chance.uniform(0.05, LONGEST_LIFE_SECONDS))
            server.kill()
            for lane in lanes:
                lane.join(timeout=60)
                assert not lane.is_alive(), "a client call outlived the server"
                models += lane.models
            server.start()
            with server.connect() as client:
                listed = client.list_stores()
                assert set(listed) <= {model.name for model in models}, "a phantom store"
                for model in models:
                    check(client, model, listed)
            for model in models:
                assert_no_leftovers(backend, model.name)
            counts["kills"] += 1
    counts["acknowledged snapshots"] = sum(len(model.snapshots) for model in models)
    counts["delta snapshots"] = sum(len(model.bases) for model in models)
    counts["stores"] = len(models)
    return counts


def test_random_kills_amid_every_mutating_operation_from_threads(storage, tmp_path):
    counts = run_mixed_kills(storage, tmp_path, kills=3, seed=4)
    print(f"\n{counts}")
    assert counts["kills"] == 3 and counts["stores"] >= 3 * LANES


@pytest.mark.slow
def test_fifty_random_kills_amid_every_mutating_operation_from_threads(storage, tmp_path):
    counts = run_mixed_kills(storage, tmp_path, kills=50, seed=50)
    print(f"\n{counts}")
    assert counts["kills"] == 50 and counts["delta snapshots"] > 0
