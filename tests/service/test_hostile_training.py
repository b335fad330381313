"""Training sessions that heal: ranks of dead workers come back, sessions end with their store,
and ranks, worker counts and timeouts out of range are refused at the edge."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import wait_for_line

from paramstore.client.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    StoreNotFound,
)
from paramstore.client.train_demo import worker_command
from paramstore.proto.v1 import paramstore_pb2 as pb

pytest_plugins = ("server_fixtures",)  # `make_server`, `server`

WORKER_SECONDS = 60


def test_training_resumes_after_every_worker_is_killed(
    make_server: Callable[..., Any], tmp_path: Path,
) -> None:
    server = make_server(worker_lease=1.0, worker_timeout=30.0)
    options = dict(workers=2, batch_size=32)
    doomed = [subprocess.Popen(worker_command(server.address, steps=6, stall_after=1,
                                              out=tmp_path / f"dead{rank}.npz", **options),
                               stdout=subprocess.PIPE, text=True) for rank in range(2)]
    for process in doomed:
        wait_for_line(process, "stalling")
    for process in doomed:  # no close(), no atexit: as an OOM kill would end them
        process.send_signal(signal.SIGKILL)
        process.wait()
    restarted = [subprocess.Popen(worker_command(server.address, steps=3, start_step=1,
                                                 out=tmp_path / f"new{rank}.npz", **options),
                                  stdout=subprocess.PIPE, text=True) for rank in range(2)]
    assert [process.wait(timeout=WORKER_SECONDS) for process in restarted] == [0, 0]


def test_a_worker_that_exits_without_close_gives_its_rank_back_at_exit(
    make_server: Callable[..., Any],
) -> None:
    server = make_server(worker_lease=60.0)  # far longer than the test: only the exit frees it
    script = ("import sys; from paramstore.client import connect; "
              "kv = connect(sys.argv[1]).kvstore('s', num_workers=1); print(kv.rank)")
    ran = subprocess.run([sys.executable, "-c", script, server.address], capture_output=True,
                         text=True, timeout=WORKER_SECONDS)
    assert ran.returncode == 0 and ran.stdout.strip() == "0", ran.stderr
    with server.connect() as client:
        started = time.monotonic()
        with client.kvstore("s", num_workers=1) as kv:
            assert kv.rank == 0
        assert time.monotonic() - started < 5


def test_a_context_manager_leaves_on_exit(server: Any) -> None:
    with server.connect() as client:
        with client.kvstore("s", num_workers=1) as kv:
            assert kv.rank == 0
        with client.kvstore("s", num_workers=1) as again:
            assert again.rank == 0


def test_a_live_worker_keeps_its_rank_past_the_lease(make_server: Callable[..., Any]) -> None:
    server = make_server(worker_lease=0.6)
    with server.connect() as client, client.kvstore("s", num_workers=1) as kv:
        time.sleep(1.5)  # heartbeats keep it
        with pytest.raises(FailedPrecondition, match="every rank is held"):
            client.kvstore("s", num_workers=1)  # waits one lease, in vain
        kv.barrier()  # the rank is still this worker's


def test_a_rank_outside_the_session_or_never_joined_is_refused(server: Any) -> None:
    with server.connect() as client, client.kvstore("s", num_workers=2) as kv:
        assert kv.rank == 0
        with pytest.raises(InvalidArgument, match="outside"):
            client.call("Barrier", pb.BarrierRequest(store="s", rank=7))
        with pytest.raises(InvalidArgument, match="outside"):
            client.call("Barrier", pb.BarrierRequest(store="s", rank=-1))
        with pytest.raises(FailedPrecondition, match="not a live worker"):
            client.call("Barrier", pb.BarrierRequest(store="s", rank=1))
        with pytest.raises(InvalidArgument, match="outside"):
            client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=2**31 - 1))


def test_deleting_a_store_ends_its_training(server: Any) -> None:
    with server.connect() as client:
        kv = client.kvstore("s", mode="sync", num_workers=2)
        waiting = ThreadPoolExecutor(1).submit(kv.barrier)  # waits for the missing rank 1
        time.sleep(0.3)
        client.delete_store("s")
        with pytest.raises(Aborted, match="was deleted"):
            waiting.result(timeout=10)
        with pytest.raises(StoreNotFound):
            kv.barrier()
        with client.kvstore("s", mode="async", num_workers=3) as fresh:  # a new session
            assert (fresh.rank, fresh.num_workers, fresh.type) == (0, 3, "dist_async")
        kv.close()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timeout=st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                         st.floats(max_value=-1e-9), st.floats(min_value=86400.5, max_value=1e300)),
       workers=st.integers(min_value=1, max_value=4))
def test_timeouts_out_of_range_are_refused(server: Any, timeout: float, workers: int) -> None:
    with server.connect() as client:
        if "t" not in client.list_stores():
            client.create_store("t")
        with pytest.raises(InvalidArgument, match="timeout"):
            client.call("JoinTraining", pb.JoinTrainingRequest(
                store="t", mode="sync", num_workers=workers, timeout_seconds=timeout))


@pytest.mark.parametrize("workers", [0, 4097, 2**32 - 1])
def test_worker_counts_out_of_range_are_refused(server: Any, workers: int) -> None:
    with server.connect() as client:
        client.create_store("w")
        with pytest.raises(InvalidArgument, match="num_workers"):
            client.call("JoinTraining", pb.JoinTrainingRequest(
                store="w", mode="sync", num_workers=workers))
        client.delete_store("w")
