"""Training steps across a store's moves: a step applied before its server stopped (killed
after committing it, or handing the store over to another replica) and sent again by its worker
is not applied a second time; a step cut by a move between its keys applies each key once; a
worker whose steps were lost with a killed server is told so instead of training on.

Each test loses the answer of a chosen step in the worker (the server applied it) and stops the
server at that moment, so the worker sends that step again to the server that comes next."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from replicas import Cluster, eventually
from s3_server import lasting_port
from server_process import ServerProcess
from test_cluster import _owner, _settled
from test_training_state import ADAM, BATCH, Worker, assert_weights_equal
from training_runs import train_in_one_process

from paramstore import nd, optimizer
from paramstore.client import Client, RemoteKVStore
from paramstore.client.errors import FailedPrecondition, ParamstoreError, Unavailable


class StopAtStep:
    """At its worker's step `step` (counted from 1 on `client`), runs `stop()` once the step
    was sent (its answer received or not), then makes the worker hear `Unavailable`, as when
    its server went away before answering, whichever way its steps go (shared memory, the
    data channel or gRPC)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: Client, step: int,
                 stop: Callable[[], None]) -> None:
        self.stopped = False
        sent = 0

        def stopping_in(push_pull: Callable[..., Any]) -> Callable[..., Any]:
            def stopping(kv: RemoteKVStore, *args: Any, **kwargs: Any) -> Any:
                nonlocal sent
                if kv._client is not client:
                    return push_pull(kv, *args, **kwargs)
                sent += 1
                if sent != step:
                    return push_pull(kv, *args, **kwargs)
                try:
                    push_pull(kv, *args, **kwargs)
                except ParamstoreError:
                    pass  # the server went before it answered: the same for the worker
                kv._steps.close()
                kv._data.close()
                stop()
                self.stopped = True
                raise Unavailable("the server went away before the step's answer arrived")

            return stopping

        for method in ("_push_pull_socket", "_push_pull_shared"):
            monkeypatch.setattr(RemoteKVStore, method, stopping_in(getattr(RemoteKVStore, method)))


@pytest.fixture
def cluster(etcd_endpoint: str, s3_endpoint: str) -> Iterator[Cluster]:
    started = Cluster(etcd_endpoint, s3_endpoint, size=2, lease_ttl=3.0)
    yield started
    started.stop_all()
    for replica in started.replicas:  # shown when a test fails
        lines = [line for line in replica.log if "ListReplicas" not in line]
        print(f"---- replica {replica.address}\n" + "".join(lines[-100:]))


def _assert_trains_as_one_process(client: Client, monkeypatch: pytest.MonkeyPatch, step: int,
                                  stop: Callable[[], None]) -> None:
    """Three steps of a worker whose server `stop`s at its step `step` end where one process
    training alone ends: weights, and the Adam state that produced them."""
    worker = Worker(client)
    stopping = StopAtStep(monkeypatch, client, step, stop)
    got = worker.train(0, 3)
    worker.kv.close()
    assert stopping.stopped
    assert_weights_equal(got, train_in_one_process(3, BATCH, "adam", ADAM))


def _restart_under_its_address(tmp_path: Path, *flags: str, crash_at: str = ""
                               ) -> ServerProcess:
    """A server on a port it keeps across restarts (a worker with one address finds it again),
    killed at the commit step `crash_at` when given."""
    mark = tmp_path / "crash-mark"
    env = {"PARAMSTORE_CRASH_AT": crash_at, "PARAMSTORE_CRASH_MARK": str(mark)} \
        if crash_at else {}
    return ServerProcess(tmp_path / "data", ("--address", f"127.0.0.1:{lasting_port()}",
                                             *flags), env=env).start()


def test_a_step_committed_before_a_kill_is_not_applied_again_after_the_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _restart_under_its_address(tmp_path, "--snapshot-every", "1",
                                        crash_at="snapshot.committed")

    def restart() -> None:  # the first periodic snapshot, after step 1, kills the server
        assert server.process is not None
        server.process.wait(30)
        server.env = {}
        server.start()

    try:
        with server.connect() as client:
            _assert_trains_as_one_process(client, monkeypatch, 1, restart)
    finally:
        server.kill()


def test_a_step_applied_before_a_hand_over_is_not_applied_again_by_the_new_owner(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.start_all()

    def hand_over() -> None:  # SIGTERM: a last snapshot, then the other replica takes it
        owner = cluster.replica_at(_settled(cluster, "m"))
        owner.signal(signal.SIGTERM)
        owner.reap()

    with cluster.connect() as client:
        _assert_trains_as_one_process(client, monkeypatch, 2, hand_over)
        # The hand-over snapshot is labelled with the step its weights are at.
        assert [info.step for info in client.store("m").snapshots()] == [2]


def test_a_step_committed_before_its_owner_is_killed_is_not_applied_again_by_the_next(
        etcd_endpoint: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(etcd_endpoint, s3_endpoint, size=2, lease_ttl=3.0,
                      flags=("--snapshot-every", "1"))

    def kill_once_committed() -> None:  # the step's periodic snapshot, then SIGKILL
        with cluster.connect() as watcher:
            eventually(lambda: 2 in [info.step for info in watcher.store("m").snapshots()],
                       30, "the snapshot of step 2")
        cluster.replica_at(_settled(cluster, "m")).kill()

    try:
        with cluster.start_all().connect() as client:
            _assert_trains_as_one_process(client, monkeypatch, 2, kill_once_committed)
    finally:
        cluster.stop_all()


def test_a_step_cut_by_a_hand_over_between_its_keys_applies_each_key_once(
        cluster: Cluster) -> None:
    """Rank 0 pushes keys a and b in one step; rank 1 pushes a, then b in a step of its own.
    Between the two the owner hands the store over: a was applied, b not yet."""
    cluster.start_all()
    applied_a = threading.Event()
    answers: dict[int, list[float]] = {}
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with cluster.connect() as client:
                kv = client.kvstore("m", mode="sync", num_workers=2, timeout=10,
                                    shared_memory=False)
                kv.init(["a", "b"], [nd.zeros(2), nd.zeros(2)])
                kv.set_optimizer(optimizer.SGD(learning_rate=1.0))
                out = [nd.zeros(2), nd.zeros(2)]
                gradient = nd.ones(2) * (kv.rank + 1)
                if kv.rank == 0:
                    kv.pushpull(["a", "b"], [gradient, gradient], out=out)
                else:
                    kv.pushpull("a", gradient, out=out[0])
                    applied_a.set()
                    eventually(lambda: _owner(cluster.addresses, "m") not in ("", owner), 30,
                               "the owner handing the store over")
                    kv.pushpull("b", gradient, out=out[1])
                answers[kv.rank] = [float(value.asnumpy()[0]) for value in out]
                kv.close()
        except BaseException as error:  # noqa: B902 - every failure is the test's
            failures.append(error)

    with cluster.connect() as client:
        client.create_store("m")
    owner = _settled(cluster, "m")
    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    eventually(applied_a.is_set, 30, "the step of key a")
    cluster.replica_at(owner).signal(signal.SIGTERM)
    for worker in workers:
        worker.join(90)
    cluster.replica_at(owner).reap()
    assert not failures, failures
    # Each key subtracts the summed gradient, 1 + 2, once.
    assert answers == {0: [-3.0, -3.0], 1: [-3.0, -3.0]}


def test_a_worker_whose_steps_died_with_its_server_is_told_so(tmp_path: Path) -> None:
    server = _restart_under_its_address(tmp_path)
    try:
        with server.connect() as client:
            worker = Worker(client)
            worker.train(0, 2)
            client.store("m").snapshot(step=2)
            worker.train(2, 1)  # acknowledged, never committed: the kill loses it
            server.restart()
            with pytest.raises(FailedPrecondition, match=r"step 4\b.*step 2\b.*lost") as raised:
                worker.train(3, 1)
            worker.kv.close()
    finally:
        server.kill()
    assert "snapshot" in str(raised.value)
