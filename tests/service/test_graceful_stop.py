"""A graceful stop (SIGTERM) of a single server: a training worker's step stream idle between
steps is ended at once with UNAVAILABLE, and every store in training is committed first, so that
its workers resume exactly after a restart."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from replicas import eventually
from server_process import ServerProcess
from test_training_moves import _restart_under_its_address
from test_training_state import ADAM, BATCH, Worker, assert_weights_equal
from training_runs import train_in_one_process

from paramstore.client.errors import ResourceExhausted
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
            replies = pb_grpc.ParamStoreStub(channel).PushPullSteps(silent())
            try:
                list(replies)
            except grpc.RpcError as error:
                ended.append(error)

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
            got = worker.train(2, 2)
            worker.kv.close()
            snapshots = client.store("m").snapshots()
    finally:
        server.kill()
    assert_weights_equal(got, train_in_one_process(4, BATCH, "adam", ADAM))
    assert [(info.step, info.metadata.get("paramstore.trigger")) for info in snapshots] \
        == [(2, "hand-over")]


def test_a_step_begun_before_a_graceful_stop_is_answered_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second step's stream pauses after its first message; SIGTERM; once the server has
    ended the idle streams, the rest of the step goes: it is answered, the stop is prompt all
    the same, and after a restart the worker resumes exactly."""
    server = _restart_under_its_address(tmp_path)
    try:
        with server.connect() as client:
            worker = Worker(client, **_transport_options("grpc"))
            _stop_amid_step(monkeypatch, server, 2)
            worker.train(0, 2)  # the step begun before the stop is answered
            assert server.terminate(timeout=PROMPT_STOP_SECONDS) == 0
            server.start()
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
            yield next(messages)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            eventually(lambda: any("ended 0 training step streams idle" in line
                                   for line in server.log), PROMPT_STOP_SECONDS,
                       "the server ending its idle step streams")
            yield from messages

        return exchange(stream, paused, read)

    monkeypatch.setattr(StepStream, "exchange", stopping)


def _transport_options(transport: str) -> dict[str, Any]:
    return {"shared memory": {},
            "grpc": {"shared_memory": False, "data_channel": False},
            "data channel": {"shared_memory": False}}[transport]


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
