"""Workers that come and go: what a departed worker leaves behind on the server stays bounded,
and its step numbering still holds when it comes back under its rank."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from paramstore import nd
from paramstore import optimizer as opt
from paramstore.proto.v1 import paramstore_pb2 as pb

MIB_FLOATS = 1 << 18  # float32 values in a MiB


def _step(client: Any, rank: int, step: int, gradient: np.ndarray) -> float:
    """Rank `rank`'s numbered step `step` of key w through PushPull; the first value it gets."""
    begin = pb.PushBegin(store="s", rank=rank, parameter_count=1, step=step)
    spec = pb.ParameterSpec(name="w", shape=list(gradient.shape), dtype="float32",
                            dtype_label="float32", kind="Parameter", has_data=True)
    replies = list(client.stream("PushPull", iter([
        pb.PushRequest(begin=begin), pb.PushRequest(parameter=spec),
        pb.PushRequest(chunk=gradient.tobytes())])))
    chunk = next(reply.chunk for reply in replies if reply.WhichOneof("item") == "chunk")
    return float(np.frombuffer(chunk, np.float32)[0])


def _joined(client: Any, workers: int, rank: int | None = None) -> int:
    return client.call("JoinTraining", pb.JoinTrainingRequest(
        store="s", mode="async", num_workers=workers, rank=rank)).rank


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_departed_workers_hold_no_copies_of_the_weights(
        make_server: Callable[..., Any]) -> None:
    workers = 16
    with make_server().connect() as client:
        with client.kvstore("s", mode="async", num_workers=workers) as first:
            first.init("w", nd.zeros(MIB_FLOATS))
        gradient = np.ones(MIB_FLOATS, np.float32)
        tracemalloc.start()
        try:
            before = _traced_bytes()
            ranks = [_joined(client, workers) for _ in range(workers)]
            for rank in ranks:  # async: each step makes a new value of w
                _step(client, rank, 1, gradient)
            for rank in ranks:
                client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=rank))
            held = _traced_bytes() - before
        finally:
            tracemalloc.stop()
    # The store's current w, and a few MiB of buffers, not one w per departed worker.
    assert held < 4 << 20, f"{held / 2**20:.1f} MiB held after {workers} workers left"


def test_a_step_sent_again_after_leaving_and_rejoining_its_rank_is_applied_once(
        make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        with client.kvstore("s", mode="async", num_workers=2) as first:
            first.init("w", nd.zeros(3))
            first.set_optimizer(opt.SGD(learning_rate=1.0))
        rank = _joined(client, 2)
        assert _step(client, rank, 1, np.ones(3, np.float32)) == -1.0
        client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=rank))
        assert _joined(client, 2, rank=rank) == rank  # the same worker, back under its rank
        assert _step(client, rank, 1, np.ones(3, np.float32)) == -1.0  # its answer, not -2
        assert _step(client, rank, 2, np.ones(3, np.float32)) == -2.0
