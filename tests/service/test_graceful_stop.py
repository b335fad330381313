"""A graceful stop (SIGTERM) of a single server: a training worker's step stream idle between
steps is ended at once with UNAVAILABLE."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from server_process import ServerProcess

from paramstore.client.errors import ResourceExhausted
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
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert dict(error.trailing_metadata() or ())[ERROR_KEY] == "ShuttingDown"
    assert "shutting down" in (error.details() or "")


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
