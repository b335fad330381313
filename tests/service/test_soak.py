"""Soak: 16 client threads on loopback mix push, pull, collect_params, initialize, snapshot and
restore on several stores of one `paramstore serve` process. Every read is checked against the
thread's last acknowledged write as it happens, and at the end every acknowledged write and
snapshot must be present, and the server's peak resident memory must stay bounded (read from
/proc). The normal suite runs a few seconds; `make soak` runs a minute."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from server_process import running_server

from paramstore import init
from paramstore.client import connect

THREADS = 16
SHARED_STORES = 4
PARAMETERS = 4  # per thread
SIZE = 4096  # floats per parameter
PEAK_RSS_LIMIT = 512 << 20  # the live data is ~1 MiB; what allocators keep is far below this
GROWTH_LIMIT = 64 << 20  # resident memory may grow this much from the first half to the second


class Worker:
    """One client thread: its own parameters in a shared store (no other thread writes them)
    and a store of its own to restore."""

    def __init__(self, address: str, index: int, seed: int) -> None:
        self.address = address
        self.index = index
        self.chance = random.Random(seed * 100 + index)
        self.shared = f"shared{index % SHARED_STORES}"
        self.own = f"own{index}"
        self.names = [f"t{index}_{k}_weight" for k in range(PARAMETERS)]
        self.expected = {name: 0.0 for name in self.names}  # last acknowledged, per name
        self.expected_own = 0.0
        self.snapshots: list[tuple[str, str]] = []  # (store, id) acknowledged
        self.calls = 0

    def run(self, deadline: float) -> None:
        operations = [self.push, self.pull, self.collect_params, self.initialize,
                      self.snapshot, self.restore]
        with connect(self.address) as client:
            self.client = client
            while time.monotonic() < deadline:
                self.chance.choice(operations)()
                self.calls += 1

    def push(self) -> None:
        values = {name: float(self.chance.randrange(1 << 20)) for name in self.names
                  if self.chance.random() < 0.7}
        self.client.store(self.shared).push(
            {name: np.full(SIZE, value, np.float32) for name, value in values.items()})
        self.expected.update(values)

    def pull(self) -> None:
        assert self.pulled(self.shared) == self.expected

    def collect_params(self) -> None:
        listed = self.client.store(self.shared).collect_params(f"t{self.index}_")
        assert list(listed.keys()) == self.names

    def initialize(self) -> None:
        value = float(self.chance.randrange(1 << 20))
        self.client.store(self.shared).initialize(
            init.Constant(value), select=f"t{self.index}_", force_reinit=True)
        self.expected = {name: value for name in self.names}

    def snapshot(self) -> None:
        info = self.client.store(self.shared).snapshot(metadata={"thread": str(self.index)})
        self.snapshots.append((self.shared, info.id))

    def restore(self) -> None:
        """Snapshot the own store, overwrite it, restore: the snapshot's values come back."""
        store = self.client.store(self.own)
        taken = store.snapshot()
        self.snapshots.append((self.own, taken.id))
        store.push({name: np.full(SIZE, -1.0, np.float32) for name in self.names})
        store.restore(taken.id)
        assert self.pulled(self.own) == {name: self.expected_own for name in self.names}
        self.expected_own = float(self.chance.randrange(1 << 20))
        store.push({name: np.full(SIZE, self.expected_own, np.float32) for name in self.names})

    def pulled(self, store_name: str) -> dict[str, float]:
        local = {name: np.zeros(SIZE, np.float32) for name in self.names}
        self.client.store(store_name).pull(local)
        values = {}
        for name, array in local.items():
            unique = np.unique(array)
            assert len(unique) == 1, f"{name} mixes writes: {unique[:5]}"
            values[name] = float(unique[0])
        return values


def resident_memory(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process, in bytes, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


def soak(data_dir: Path, seconds: float, seed: int) -> dict[str, float]:
    """Run the workers for `seconds`, check what they wrote; returns figures to report."""
    with running_server(data_dir) as server:
        workers = [Worker(server.address, index, seed) for index in range(THREADS)]
        with server.connect() as client:
            for index in range(SHARED_STORES):
                client.create_store(f"shared{index}")
            for worker in workers:
                client.store(worker.shared).push(
                    {name: np.zeros(SIZE, np.float32) for name in worker.names})
                client.create_store(worker.own).push(
                    {name: np.zeros(SIZE, np.float32) for name in worker.names})
        failures: list[BaseException] = []

        def run(worker: Worker) -> None:
            try:
                worker.run(deadline)
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
        for thread in threads:
            thread.start()
        samples = []  # the server's resident memory, sampled while the workers run
        while any(thread.is_alive() for thread in threads):
            samples.append(resident_memory(server.process.pid)[0])
            time.sleep(0.1)
        for thread in threads:
            thread.join(timeout=seconds + 120)
        assert not failures, failures[0]
        _, peak = resident_memory(server.process.pid)
        half = len(samples) // 2

        with server.connect() as client:  # every acknowledged write and snapshot is there
            for worker in workers:
                worker.client = client
                assert worker.pulled(worker.shared) == worker.expected
                assert worker.pulled(worker.own) == dict.fromkeys(worker.names,
                                                                  worker.expected_own)
            listed = {name: {info.id for info in client.store(name).snapshots()}
                      for name in client.list_stores()}
            for worker in workers:
                for store_name, snapshot_id in worker.snapshots:
                    assert snapshot_id in listed[store_name], (store_name, snapshot_id)
    return {"calls": sum(worker.calls for worker in workers), "peak_rss": peak,
            "snapshots": sum(len(worker.snapshots) for worker in workers),
            "growth": max(samples[half:]) - max(samples[:half])}


def check_and_report(figures: dict[str, float], seconds: float) -> None:
    peak_mib = figures["peak_rss"] / 2**20
    print(f"\nsoak {seconds:g} s, {THREADS} threads: {figures['calls']} calls, "
          f"{figures['snapshots']} snapshots, server peak RSS {peak_mib:.0f} MiB, "
          f"{figures['growth'] / 2**20:+.1f} MiB from the first half to the second")
    assert figures["calls"] > THREADS
    assert figures["peak_rss"] < PEAK_RSS_LIMIT
    assert figures["growth"] < GROWTH_LIMIT


def test_sixteen_clients_for_two_seconds_lose_nothing(tmp_path):
    check_and_report(soak(tmp_path / "data", seconds=2, seed=1), 2)


@pytest.mark.slow
def test_sixteen_clients_for_a_minute_lose_nothing_and_memory_stays_bounded(tmp_path):
    check_and_report(soak(tmp_path / "data", seconds=60, seed=2), 60)
