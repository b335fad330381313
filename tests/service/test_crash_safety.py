"""Crash safety, proven by repetition: a `paramstore serve` process is killed with SIGKILL at
random moments while a client pushes and snapshots, then restarted on the same data, again and
again. After every restart the latest acknowledged snapshot is listed and whole (its checksum
verified on load), no temporary file is listed or left behind, and the store serves a complete
snapshot and takes new writes. `make soak` runs the long loop; the normal suite a short one."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from server_process import ServerProcess, running_server
from storage_files import assert_no_leftovers, files_of, snapshot_path

from paramstore import checkpoint
from paramstore.client import connect
from paramstore.client.errors import ParamstoreError
from paramstore.server.storage import LocalBackend

SIZE = 1 << 20  # floats per push: 4 MiB, so that a kill often lands inside a snapshot write
LONGEST_LIFE_SECONDS = 0.4  # a server is killed this long after its start, at most


@dataclass
class CrashLog:
    """What the loop saw: snapshot id -> the value its tensor holds, for every snapshot a
    client was told was taken; how many kills left a snapshot half written."""

    acknowledged: dict[str, float] = field(default_factory=dict)
    iterations: int = 0
    kills_during_a_snapshot_write: int = 0


def write_until_killed(address: str, first_value: float, log: CrashLog) -> None:
    """Push a tensor filled with one value, snapshot it, repeat with the next value, until
    the server dies under a call."""
    value = first_value
    try:
        with connect(address) as client:
            store = client.store("s")
            while True:
                store.push({"w": np.full(SIZE, value, np.float32)})
                info = store.snapshot(step=int(value))
                log.acknowledged[info.id] = value
                value += 1
    except ParamstoreError:
        return  # killed under a push or a snapshot, as intended


def uniform_value(array: np.ndarray) -> float:
    values = np.unique(array)
    assert len(values) == 1, f"a tensor mixes writes: {values[:5]}"
    return float(values[0])


def check_recovered(server: ServerProcess, log: CrashLog) -> None:
    """Everything a crash may not break, checked on the restarted server."""
    assert_no_leftovers(LocalBackend(server.data_dir), "s")
    with server.connect() as client:
        store = client.store("s")
        listed = [info.id for info in store.snapshots()]
        assert all(re.fullmatch(r"\d{8}", snapshot_id) for snapshot_id in listed), listed
        assert set(log.acknowledged) <= set(listed), "an acknowledged snapshot was lost"
        latest = max(log.acknowledged, key=int)
        on_disk = checkpoint.load(snapshot_path(server.data_dir, "s", latest))  # verified
        assert uniform_value(on_disk.tensors["w"]) == log.acknowledged[latest]
        # The store came back from the newest listed snapshot: the acknowledged one, or one
        # written just before the kill whose reply was lost.
        served = store.collect_params()["w"].data().asnumpy()
        newest = checkpoint.load(snapshot_path(server.data_dir, "s", listed[-1]))
        assert uniform_value(served) == uniform_value(newest.tensors["w"])
        assert uniform_value(served) >= log.acknowledged[latest]


def run_crash_loop(data_dir: Path, iterations: int, seed: int) -> CrashLog:
    """Start, write, SIGKILL at a random moment, restart and check, `iterations` times."""
    chance = random.Random(seed)
    log = CrashLog()
    with running_server(data_dir) as server:
        with server.connect() as client:
            store = client.create_store("s")
            store.push({"w": np.zeros(SIZE, np.float32)})
            log.acknowledged[store.snapshot(step=0).id] = 0.0
        for iteration in range(1, iterations + 1):
            writer = threading.Thread(target=write_until_killed,
                                      args=(server.address, iteration * 1000.0, log))
            writer.start()
            time.sleep(chance.uniform(0, LONGEST_LIFE_SECONDS))
            if [path for path in files_of(data_dir, "s") if path.name.startswith(".")]:
                log.kills_during_a_snapshot_write += 1
            server.kill()
            writer.join(timeout=60)
            assert not writer.is_alive(), "a client call outlived the server"
            server.start()
            check_recovered(server, log)
            log.iterations = iteration
        with server.connect() as client:  # the store still takes writes and snapshots
            store = client.store("s")
            store.push({"w": np.full(SIZE, -1.0, np.float32)})
            store.restore(store.snapshot().id)
            assert uniform_value(store.collect_params()["w"].data().asnumpy()) == -1.0
    return log


def test_the_latest_acknowledged_snapshot_survives_four_random_sigkills(tmp_path):
    log = run_crash_loop(tmp_path / "data", iterations=4, seed=8)
    assert log.iterations == 4
    assert len(log.acknowledged) > 1  # writes were acknowledged between the kills


@pytest.mark.slow
def test_the_latest_acknowledged_snapshot_survives_fifty_random_sigkills(tmp_path):
    log = run_crash_loop(tmp_path / "data", iterations=50, seed=50)
    print(f"\n{log.iterations} SIGKILLs, {log.kills_during_a_snapshot_write} during a snapshot "
          f"write, {len(log.acknowledged)} snapshots acknowledged and verified")
    assert log.iterations == 50
    assert log.kills_during_a_snapshot_write > 0
