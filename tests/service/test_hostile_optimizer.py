"""A store's optimizer from the wire: settings and states that cannot train are refused where
they arrive, or fail the step for every worker with FAILED_PRECONDITION, and change nothing;
a states file is held within the bytes the server lets requests hold."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramstore import nd
from paramstore import optimizer as opt
from paramstore.client.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.admission import CallLimits

WAIT = 10  # seconds: every call here answers at once, or the test fails rather than hangs


def _set_optimizer(client: Any, store: str, text: str) -> None:
    client.call("SetOptimizer", pb.SetOptimizerRequest(store=store, optimizer=text))


def _set_states(client: Any, store: str, data: bytes) -> None:
    client.call("SetOptimizerStates", iter([pb.SetOptimizerStatesRequest(store=store)] + [
        pb.SetOptimizerStatesRequest(chunk=data[start:start + (1 << 20)])
        for start in range(0, len(data), 1 << 20)]))


def _stored(client: Any, store: str = "m") -> list[float]:
    return client.store(store).collect_params()["w"].data().asnumpy().tolist()


@pytest.mark.parametrize("settings", [
    '["adamax", {"beta1": 1.0}]',  # a division by zero
    '["sgld", {"learning_rate": -1}]',  # the square root of a negative rate
    '["adam", {"beta1": 1.0}]',  # a bias correction of zero
])
def test_an_optimizer_that_cannot_update_fails_the_step_for_every_worker_and_changes_nothing(
        make_server: Callable[..., Any], settings: str) -> None:
    with make_server().connect() as client:
        workers = [client.kvstore("m", mode="sync", num_workers=2, timeout=WAIT)
                   for _ in range(2)]
        workers[0].init("w", nd.ones(3))
        _set_optimizer(client, "m", settings)
        out = [nd.zeros(3), nd.zeros(3)]
        with ThreadPoolExecutor(2) as pool:
            steps = [pool.submit(kv.pushpull, "w", nd.ones(3), out=place)
                     for kv, place in zip(workers, out)]
            for step in steps:
                with pytest.raises(FailedPrecondition, match="cannot update key 'w'"):
                    step.result(timeout=WAIT)
        assert _stored(client) == [1.0, 1.0, 1.0]
        _set_optimizer(client, "m", '["sgd", {"learning_rate": 0.5}]')
        with ThreadPoolExecutor(2) as pool:
            for step in [pool.submit(kv.pushpull, "w", nd.ones(3), out=place)
                         for kv, place in zip(workers, out)]:
                step.result(timeout=WAIT)
        assert _stored(client) == [0.0, 0.0, 0.0]  # 1 - 0.5 * (1 + 1)


@pytest.mark.parametrize("settings", [
    '["sgd", {"lr_scheduler": 3}]',
    '["sgd", {"begin_num_update": 1e400}]',
    '["sgd", {"begin_num_update": 2.5}]',
    '["lamb", {"lower_bound": "x"}]',
])
def test_settings_that_build_no_optimizer_are_refused_and_keep_the_one_in_use(
        make_server: Callable[..., Any], settings: str) -> None:
    with make_server().connect() as client, \
            client.kvstore("m", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.ones(3))
        _set_optimizer(client, "m", '["sgd", {"learning_rate": 1.0}]')
        with pytest.raises(InvalidArgument, match="cannot build the optimizer"):
            _set_optimizer(client, "m", settings)
        kv.pushpull("w", nd.ones(3), out=nd.zeros(3))
        assert _stored(client) == [0.0, 0.0, 0.0]


def _states_file(states: dict[str, np.ndarray], optimizer: opt.Optimizer) -> bytes:
    return opt.checkpoint.dumps(states, metadata={"paramstore.optimizer": optimizer.dumps()})


@pytest.mark.parametrize("momentum", [np.ones(7, np.float32), np.ones(3, np.int8),
                                      np.ones((3, 1), np.float32)],
                         ids=["other-shape", "integer", "other-rank"])
def test_optimizer_states_that_do_not_fit_their_key_are_refused_and_change_nothing(
        make_server: Callable[..., Any], momentum: np.ndarray) -> None:
    with make_server().connect() as client, \
            client.kvstore("m", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.ones(3))
        kv.set_optimizer(opt.SGD(learning_rate=1.0, momentum=0.5))
        kv.pushpull("w", nd.ones(3), out=nd.zeros(3))
        before = b"".join(reply.chunk for reply in client.stream(
            "GetOptimizerStates", pb.GetOptimizerStatesRequest(store="m")))
        sgd = opt.SGD(momentum=0.5)
        with pytest.raises(InvalidArgument, match="'w/momentum'.*key 'w' is float32\\[3\\]"):
            _set_states(client, "m", _states_file(
                {"num_update": np.array(1), "w/count": np.array(1), "w/momentum": momentum}, sgd))
        after = b"".join(reply.chunk for reply in client.stream(
            "GetOptimizerStates", pb.GetOptimizerStatesRequest(store="m")))
        assert after == before
        kv.pushpull("w", nd.ones(3), out=nd.zeros(3))  # the store still trains


def test_an_optimizer_of_the_same_kind_with_other_settings_replaces_one_with_state(
        make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client, \
            client.kvstore("m", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.ones(3))
        kv.set_optimizer(opt.SGD(learning_rate=1.0, momentum=0.5))
        kv.pushpull("w", nd.ones(3), out=nd.zeros(3))  # keeps a momentum
        kv.set_optimizer(opt.SGD(learning_rate=1.0))  # which plain SGD has no room for
        kv.pushpull("w", nd.ones(3), out=nd.zeros(3))
        assert _stored(client) == [-1.0, -1.0, -1.0]  # 1 - 1, then - 1 with no momentum


def test_an_optimizer_states_file_counts_against_the_bytes_in_flight(
        make_server: Callable[..., Any]) -> None:
    limit = 64 << 10
    server = make_server(calls=CallLimits(max_inflight_bytes=limit))
    with server.connect() as client, \
            client.kvstore("m", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.zeros(1024))
        big, small = opt.Adam(), opt.SGD(momentum=0.9)
        big.update("other", np.zeros(limit // 4, np.float32), np.ones(limit // 4, np.float32))
        small.update("w", np.zeros(1024, np.float32), np.ones(1024, np.float32))
        with pytest.raises(ResourceExhausted, match="optimizer states file"):
            _set_states(client, "m", opt.dumps_states(big))  # twice the bound
        with pytest.raises(FailedPrecondition, match="no optimizer"):
            list(client.stream("GetOptimizerStates", pb.GetOptimizerStatesRequest(store="m")))
        _set_states(client, "m", opt.dumps_states(small))  # within the bound: taken
        kv.pushpull("w", nd.ones(1024), out=nd.zeros(1024))
        # The file's momentum (-0.01) was taken: 0.9 * -0.01 - 0.01 * 1, not -0.01.
        np.testing.assert_allclose(_stored(client), [-0.019] * 1024, rtol=1e-6)


class _WritesAFile:
    """Unpickled, it would create `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_a_pickle_sent_as_optimizer_states_is_refused_and_never_unpickled(
        make_server: Callable[..., Any], tmp_path: Path) -> None:
    written = tmp_path / "unpickled"
    with make_server().connect() as client, \
            client.kvstore("m", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.ones(3))
        for protocol in (2, pickle.HIGHEST_PROTOCOL):
            with pytest.raises(InvalidArgument, match="not an optimizer states file"):
                _set_states(client, "m", pickle.dumps(_WritesAFile(str(written)), protocol))
        assert not written.exists()


def test_an_upload_of_optimizer_states_that_stalls_is_cut_and_gives_its_bytes_back(
        make_server: Callable[..., Any]) -> None:
    server = make_server(calls=CallLimits(max_inflight_bytes=64 << 10, idle_timeout=1.0))
    sgd = opt.SGD(momentum=0.9)
    sgd.update("w", np.zeros(8 << 10, np.float32), np.ones(8 << 10, np.float32))
    data = opt.dumps_states(sgd)  # 32 KiB and a header: two do not fit the bound
    ended = threading.Event()

    def stalled() -> Iterator[pb.SetOptimizerStatesRequest]:
        yield pb.SetOptimizerStatesRequest(store="m")
        yield pb.SetOptimizerStatesRequest(chunk=data[:len(data) - 1])
        ended.wait(WAIT)  # the last byte never comes

    with server.connect() as client, server.connect() as stalling, \
            client.kvstore("m", mode="sync", num_workers=1) as kv, ThreadPoolExecutor(4) as pool:
        kv.init("w", nd.zeros(8 << 10))
        try:
            upload = _holding(lambda: pool.submit(stalling.call, "SetOptimizerStates",
                                                  stalled()), client, len(data))
            with pytest.raises(Cancelled):
                upload.result(timeout=WAIT)
        finally:
            ended.set()
        with pytest.raises(FailedPrecondition, match="no optimizer"):  # nothing was loaded
            list(client.stream("GetOptimizerStates", pb.GetOptimizerStatesRequest(store="m")))
        _set_states(client, "m", data)  # the stalled upload's bytes are back
        kv.pushpull("w", nd.ones(8 << 10), out=nd.zeros(8 << 10))
        np.testing.assert_allclose(_stored(client), [-0.019] * (8 << 10), rtol=1e-6)


def _holding(start: Callable[[], Future[Any]], client: Any, held: int) -> Future[Any]:
    """An upload `start()`s, once the server holds its `held` bytes of the 64 KiB bound: then
    an upload of junk that would fit alone is refused for its bytes rather than read and
    refused for what it is. An upload refused while such junk held the bytes starts again."""
    junk = bytes(64 * 1024 - held // 2)
    deadline = time.monotonic() + WAIT
    upload = start()
    while True:
        try:
            _set_states(client, "m", junk)
        except ResourceExhausted as error:
            assert "optimizer states file" in str(error)
            return upload
        except InvalidArgument:
            assert time.monotonic() < deadline, "the stalled upload never held its bytes"
            if upload.done():
                upload = start()
            time.sleep(0.01)
