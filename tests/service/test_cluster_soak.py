"""The long cluster runs (`make soak`): ten owners SIGKILLed while clients push, snapshot and
train, and rolling restarts of every replica under that load."""

from __future__ import annotations

import random
import threading
import time

import pytest
from replicas import Cluster, eventually
from test_cluster import _filled, _first_value, _owner
from test_training_shared_memory import (
    _assert_same_weights_and_gradients,
    _backward,
    _local_and_remote_nets,
)

from paramstore.client import connect

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(etcd_endpoint: str, s3_endpoint: str) -> Cluster:
    started = Cluster(etcd_endpoint, s3_endpoint, lease_ttl=3.0)
    yield started
    started.stop_all()


class Load:
    """Clients pushing and snapshotting their own stores until stopped; what each had
    acknowledged, and what failed."""

    def __init__(self, cluster: Cluster, stores: int) -> None:
        self.cluster = cluster
        self.names = [f"busy{index}" for index in range(stores)]
        self.snapshots: dict[str, list[tuple[str, float]]] = {name: [] for name in self.names}
        self.failures: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._work, args=(name,)) for name in self.names]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def _work(self, name: str) -> None:
        with connect(self.cluster.addresses) as client:
            store = client.create_store(name)
            value = 0.0
            while not self.stop.is_set():
                value += 1
                try:
                    store.push(_filled(value).collect_params())
                    info = store.snapshot(step=int(value))
                except BaseException as error:  # noqa: B902 - every failure is the test's
                    self.failures.append(error)
                    return
                self.snapshots[name].append((info.id, value))

    def check(self) -> None:
        """No call failed; every acknowledged snapshot is listed and holds what was pushed."""
        assert not self.failures, self.failures
        with connect(self.cluster.addresses) as client:
            for name, taken in self.snapshots.items():
                assert taken, f"{name} took no snapshot"
                listed = {info.id for info in client.store(name).snapshots()}
                assert {snapshot_id for snapshot_id, _ in taken} <= listed
                for snapshot_id, value in random.sample(taken, min(3, len(taken))):
                    client.store(name).restore(snapshot_id)
                    assert _first_value(client, name) == value


def test_ten_owners_killed_under_load_lose_no_acknowledged_snapshot(cluster: Cluster) -> None:
    cluster.start_all()
    with Load(cluster, stores=6) as load:
        time.sleep(2)
        for kill in range(10):
            name = load.names[kill % len(load.names)]
            owner = _owner(cluster.addresses, name)
            if not owner:
                time.sleep(1)
                continue
            victim = cluster.replica_at(owner)
            victim.kill()
            time.sleep(cluster.lease_ttl + 2)
            cluster.start(victim)
            eventually(lambda v=victim: bool(_owner_of_any(cluster, v.address)), 60,
                       "the restarted replica owning stores")
    load.check()


def _owner_of_any(cluster: Cluster, address: str) -> bool:
    with connect(cluster.addresses) as client:
        return bool(client.cluster().get(address))


def test_rolling_restarts_under_load_fail_no_call(cluster: Cluster) -> None:
    cluster.start_all()
    with Load(cluster, stores=6) as load:
        for _ in range(2):
            time.sleep(2)
            cluster.rolling_restart(pause=2)
    load.check()


def test_a_worker_trains_bit_exactly_as_one_process_through_rolling_restarts(
        cluster: Cluster) -> None:
    """The tied MLP trained through the cluster and in this process side by side, step after
    step, while every replica restarts in turn (each move a hand-over of the store, its steps
    cut wherever they were): weights and gradients stay equal to the last bit."""
    cluster.start_all()
    stop = threading.Event()
    steps: list[int] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with connect(cluster.addresses) as client, \
                    client.kvstore("mlp", mode="sync", num_workers=1, timeout=30) as kv:
                (local, here), (remote, there) = _local_and_remote_nets(kv)
                step = 0
                while not stop.is_set():
                    for net, trainer in ((local, here), (remote, there)):
                        _backward(net, step)
                        trainer.step(8)
                    _assert_same_weights_and_gradients(remote, local)
                    step += 1
                steps.append(step)
        except BaseException as error:  # noqa: B902 - every failure is the test's
            failures.append(error)

    cluster.restart_under([threading.Thread(target=work)], stop)
    assert not failures, failures
    assert steps and steps[0] > 20
