"""A graceful stop (SIGTERM) of a single server: a training worker's step stream idle between
steps is ended at once with UNAVAILABLE, and every store in training is committed first, so that
its workers resume exactly after a restart."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from replicas import eventually
from server_process import ServerProcess
from test_metrics import scrape
from test_training_moves import _restart_under_its_address
from test_training_state import ADAM, BATCH, Worker, assert_weights_equal
from training_runs import train_in_one_process

from paramstore.client import Client
from paramstore.client.errors import ResourceExhausted, Unavailable
from paramstore.client.steps import StepStream
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc
from paramstore.proto.wire import ERROR_KEY

# Far below the server's 30 s grace: a stop that waits for idle calls takes the whole grace.
PROMPT_STOP_SECONDS = 15.0


def test_a_step_stream_whose_worker_sends_nothing_ends_unavailable_at_a_graceful_stop(
        tmp_path: Path) -> None:
    # One call per caller: once the silent call is in, this test's own calls are refused.
    server = ServerProcess(tmp_path / "data", ("--max-calls-per-caller", "1")).start()
    ended: list[grpc.RpcError] = []
    never = threading.Event()

    def silent() -> Iterator[pb.PushRequest]:  # a worker gone without closing its call
        never.wait(60)
        yield from ()

    def step_stream() -> None:
        with grpc.insecure_channel(server.address) as channel:
            while not never.is_set():  # again while a probe of this test holds the one slot
                try:
                    list(pb_grpc.ParamStoreStub(channel).PushPullSteps(silent()))
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        ended.append(error)
                        return

    caller = threading.Thread(target=step_stream)
    try:
        caller.start()
        _wait_until_refused(server)
        assert server.terminate(timeout=PROMPT_STOP_SECONDS) == 0
        caller.join(PROMPT_STOP_SECONDS)
    finally:
        never.set()
        server.kill()
    [error] = ended
    assert any("ended 1 training step streams idle" in line for line in server.log)
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert dict(error.trailing_metadata() or ())[ERROR_KEY] == "ShuttingDown"
    assert "shutting down" in (error.details() or "")


@pytest.mark.parametrize("transport", ["shared memory", "grpc", "data channel"])
def test_a_worker_resumes_exactly_after_a_graceful_restart(
        transport: str, tmp_path: Path) -> None:
    """Two steps, SIGTERM (prompt: the worker's step stream is idle), a restart on the same
    data, two more steps: the weights of four steps in one process. The two first steps were
    never snapshotted but by the stop."""
    server = _restart_under_its_address(tmp_path)
    try:
        with server.connect() as client:
            worker = Worker(client, **_transport_options(transport))
            worker.train(0, 2)
            assert server.terminate(timeout=PROMPT_STOP_SECONDS) == 0
            server.start()
            _wait_until_reachable(client)
            got = worker.train(2, 2)
            worker.kv.close()
            snapshots = client.store("m").snapshots()
    finally:
        server.kill()
    assert_weights_equal(got, train_in_one_process(4, BATCH, "adam", ADAM))
    assert [(info.step, info.metadata.get("paramstore.trigger")) for info in snapshots] \
        == [(2, "hand-over")]


def test_two_sync_workers_resume_exactly_after_a_graceful_restart(tmp_path: Path) -> None:
    server = _restart_under_its_address(tmp_path)
    halfway = threading.Barrier(3)  # the two workers, two steps each, and this test
    restarted = threading.Event()
    weights: dict[int, list[np.ndarray]] = {}
    failures: list[BaseException] = []

    def work(client: Client, worker: Worker) -> None:
        try:
            worker.train(0, 2)
            halfway.wait(60)
            restarted.wait(60)
            _wait_until_reachable(client)
            weights[worker.kv.rank] = worker.train(2, 2)
            worker.kv.close()
        except BaseException as error:  # noqa: B902 - every failure is the test's
            failures.append(error)
            halfway.abort()

    clients = [server.connect() for _ in range(2)]
    try:
        # Made one after the other: the engine's random draws are the process's, not a thread's.
        workers = [Worker(client, num_workers=2, timeout=30) for client in clients]
        threads = [threading.Thread(target=work, args=pair) for pair in zip(clients, workers)]
        for thread in threads:
            thread.start()
        halfway.wait(60)
        assert server.terminate(timeout=PROMPT_STOP_SECONDS) == 0
        server.start()
        restarted.set()
        for thread in threads:
            thread.join(120)
    finally:
        restarted.set()
        for client in clients:
            client.close()
        server.kill()
    assert not failures, failures
    want = train_in_one_process(4, BATCH, "adam", ADAM)
    assert_weights_equal(weights[0], want)
    assert_weights_equal(weights[1], want)


def test_a_step_begun_before_a_graceful_stop_is_answered_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second step's stream pauses after its first message; SIGTERM; once the server has
    ended the idle streams, the rest of the step goes: it is answered, the stop is prompt all
    the same, and after a restart the worker resumes exactly."""
    server = _restart_under_its_address(tmp_path, "--metrics-port", "0")
    try:
        with server.connect() as client:
            worker = Worker(client, **_transport_options("grpc"))
            _stop_amid_step(monkeypatch, server, 2)
            worker.train(0, 2)  # the step begun before the stop is answered
            assert server.terminate(timeout=PROMPT_STOP_SECONDS) == 0
            server.start()
            _wait_until_reachable(client)
            got = worker.train(2, 2)
            worker.kv.close()
    finally:
        server.kill()
    assert_weights_equal(got, train_in_one_process(4, BATCH, "adam", ADAM))


def _stop_amid_step(monkeypatch: pytest.MonkeyPatch, server: ServerProcess, step: int) -> None:
    """At the worker's step `step` (counted from 1), SIGTERM `server` once the step's first
    message is sent, and send the rest once the server ended its idle step streams."""
    exchange = StepStream.exchange
    sent = 0

    def stopping(stream: StepStream, requests: Callable[[bool], Iterable[Any]],
                 read: Callable[[Any], Any]) -> Any:
        nonlocal sent
        sent += 1
        if sent != step:
            return exchange(stream, requests, read)

        def paused(continuing: bool) -> Iterator[Any]:
            messages = iter(requests(continuing))
            before = _step_bytes_received(server)
            yield next(messages)
            eventually(lambda: _step_bytes_received(server) > before, PROMPT_STOP_SECONDS,
                       "the server receiving the step's first message")
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            eventually(lambda: any("training step streams idle" in line for line in server.log),
                       PROMPT_STOP_SECONDS, "the server ending its idle step streams")
            yield from messages

        return exchange(stream, paused, read)

    monkeypatch.setattr(StepStream, "exchange", stopping)


def _step_bytes_received(server: ServerProcess) -> float:
    """The bytes of PushPullSteps requests the server has received, from its metrics."""
    [port] = re.findall(r"metrics on http://[\d.]+:(\d+)/metrics", "".join(server.log))
    return sum(value for (name, labels), value in scrape(int(port)).items()
               if name == "paramstore_received_bytes_total"
               and ("method", "PushPullSteps") in labels)


def _transport_options(transport: str) -> dict[str, Any]:
    return {"shared memory": {},
            "grpc": {"shared_memory": False, "data_channel": False},
            "data channel": {"shared_memory": False}}[transport]


def _wait_until_reachable(client: Client) -> None:
    """Until `client` reaches its restarted server: the SDK does not wait for a single server
    to come back (its channel may be backing off from the attempts made while it was down)."""
    deadline = time.monotonic() + PROMPT_STOP_SECONDS
    while True:
        try:
            client.list_stores()
            return
        except Unavailable:
            assert time.monotonic() < deadline, "the restarted server is out of reach"
            time.sleep(0.1)


def _wait_until_refused(server: ServerProcess) -> None:
    """Until a call of this caller is refused for the calls it has in flight."""
    with server.connect() as client:
        deadline = time.monotonic() + PROMPT_STOP_SECONDS
        while time.monotonic() < deadline:
            try:
                client.list_stores()
            except ResourceExhausted:
                return
            time.sleep(0.05)
    raise AssertionError("the silent step stream never reached the server")
