"""Workers that come and go: what a departed worker leaves behind on the server stays bounded,
its step numbering still holds when it comes back under its rank, and a worker whose rank
lapsed and went to another can no longer act in the other's name."""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile_segments import HOSTILE

from paramstore import nd
from paramstore import optimizer as opt
from paramstore.client.errors import Aborted, FailedPrecondition, InvalidArgument, ParamstoreError
from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb

pytest_plugins = ("server_fixtures",)  # `served`: one server process for the module

MIB_FLOATS = 1 << 18  # float32 values in a MiB
WAIT = 30  # seconds a process may take to answer before the test fails rather than hangs


def _step(client: Any, rank: int, step: int, gradient: np.ndarray, worker: int = 0,
          method: str = "PushPull") -> float:
    """Rank `rank`'s numbered step `step` of key w through `method` (from the worker of
    worker_id `worker`); the first value it gets."""
    begin = pb.PushBegin(store="s", rank=rank, parameter_count=1, step=step, worker_id=worker)
    spec = pb.ParameterSpec(name="w", shape=list(gradient.shape), dtype="float32",
                            dtype_label="float32", kind="Parameter", has_data=True)
    replies = list(client.stream(method, iter([
        pb.PushRequest(begin=begin), pb.PushRequest(parameter=spec),
        pb.PushRequest(chunk=gradient.tobytes())])))
    chunk = next(reply.chunk for reply in replies if reply.WhichOneof("item") == "chunk")
    return float(np.frombuffer(chunk, np.float32)[0])


def _joined(client: Any, workers: int, rank: int | None = None) -> int:
    return client.call("JoinTraining", pb.JoinTrainingRequest(
        store="s", mode="async", num_workers=workers, rank=rank)).rank


def _stored(client: Any) -> list[float]:
    return client.store("s").collect_params()["w"].data().asnumpy().tolist()


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



def _segments_held(pid: int) -> tuple[int, int]:
    """The workers' shared-memory segments process `pid` maps, and those it holds open."""
    with open(f"/proc/{pid}/maps") as maps:
        mapped = sum("/memfd:paramstore-" in line for line in maps)
    links = []
    for descriptor in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{descriptor}"))
        except FileNotFoundError:
            pass  # closed while listed
    return mapped, sum(link.startswith("/memfd:paramstore-") for link in links)


def test_the_segments_of_workers_that_left_are_no_longer_mapped(served: Any, remote: Any) -> None:
    with remote.kvstore("s", mode="async", num_workers=8) as first:
        first.init("w", nd.zeros(MIB_FLOATS))
    killed = subprocess.Popen([sys.executable, "-c", (
        "import sys; from paramstore import nd; from paramstore.client import connect\n"
        "kv = connect(sys.argv[1]).kvstore('s', mode='async', num_workers=8)\n"
        f"kv.pushpull('w', nd.ones({MIB_FLOATS}), out=nd.zeros({MIB_FLOATS}))\n"
        "print(kv.shared_memory, flush=True); sys.stdin.readline()\n"), served.address],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout is not None and killed.stdout.readline().strip() == "True"
    finally:
        killed.kill()  # it never leaves: its segment goes with its process
        killed.wait()
    for worker in range(6):  # in turn, and two at a time
        with remote.kvstore("s", mode="async", num_workers=8) as kv, \
                remote.kvstore("s", mode="async", num_workers=8) as other:
            assert kv.shared_memory and other.shared_memory
            for one in (kv, other):
                one.pushpull("w", nd.ones(MIB_FLOATS) * worker, out=nd.zeros(MIB_FLOATS))
    assert _stored(remote)[:2] == [5.0, 5.0]
    assert _segments_held(served.process.pid) == (0, 0)


def _workers_come_and_go(client: Any, seed: int) -> None:
    for _ in range(4):
        with client.kvstore("s", mode="async", num_workers=8) as kv:
            assert kv.shared_memory
            for size in (3, 4096):  # a larger step replaces the segment
                out = nd.zeros(size)
                kv.pushpull("w" if size == 3 else "big", nd.ones(size) * seed, out=out)
                assert out.asnumpy().tolist() == [seed] * size  # no optimizer: the gradient


def _hostile_steps(client: Any, folder: Path) -> list[str]:
    """Steps naming each thing but a sealed memfd of its name; how the answers were wrong."""
    wrong = []
    for kind, (make, refusal) in list(HOSTILE.items()) * 2:
        with ExitStack() as stack:
            begin = pb.PushBegin(store="s", rank=0, parameter_count=1,
                                 shared_memory=make(stack, folder))
            spec = pb.ParameterSpec(name="w", shape=[3], dtype="float32",
                                    dtype_label="float32", kind="Parameter", has_data=True)
            try:
                list(client.stream("PushPullSteps", iter([
                    pb.PushRequest(begin=begin), pb.PushRequest(parameter=spec)])))
                wrong.append(f"{kind}: accepted")
            except ParamstoreError as error:
                if not isinstance(error, InvalidArgument) or refusal not in str(error):
                    wrong.append(f"{kind}: {type(error).__name__}: {error}")
    return wrong


def test_hostile_segments_among_workers_that_come_and_go_leave_nothing_mapped(
        served: Any, remote: Any, tmp_path: Path) -> None:
    with remote.kvstore("s", mode="async", num_workers=8) as first:
        first.init(["w", "big"], [nd.zeros(3), nd.zeros(4096)])
    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(_workers_come_and_go, remote, seed) for seed in (1, 2, 3)]
        hostile = pool.submit(_hostile_steps, remote, tmp_path)
        for worker in workers:
            worker.result(timeout=WAIT)
        assert hostile.result(timeout=WAIT) == []
    assert _segments_held(served.process.pid) == (0, 0)
    assert served.process.poll() is None



def _threads_and_descriptors(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def _refused_steps(client: Any, data_channel: bool) -> None:
    """A worker that joins, has a step refused on each path and an optimizer refused, and
    leaves."""
    joined = client.call("JoinTraining", pb.JoinTrainingRequest(
        store="s", mode="sync", num_workers=4))
    for method in ("PushPull", "PushPullSteps"):
        with pytest.raises(FailedPrecondition, match="gradient of 'w'"):  # of another shape
            _step(client, joined.rank, 1, np.ones(5, np.float32), joined.worker_id, method)
    with pytest.raises(InvalidArgument):
        client.call("SetOptimizer", pb.SetOptimizerRequest(store="s", optimizer="[1]"))
    if data_channel:
        ticket = client.call("OpenDataChannel", pb.OpenDataChannelRequest(
            store="s", rank=joined.rank, worker_id=joined.worker_id))
        with socket.create_connection(("127.0.0.1", ticket.port), timeout=WAIT) as stream:
            stream.sendall(ticket.ticket)
            assert frames.read_message(stream, pb.DataStatus).code == 0
            frames.send_message(stream, pb.DataStep(begin=pb.PushBegin(
                store="s", rank=joined.rank, parameter_count=1, worker_id=joined.worker_id)))
            assert frames.read_message(stream, pb.DataStatus).code != 0  # no parameter came
    client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=joined.rank,
                                                         worker_id=joined.worker_id))


def test_refused_steps_of_workers_that_come_and_go_leave_no_threads_or_descriptors(
        served: Any, remote: Any) -> None:
    pid = served.process.pid
    with remote.kvstore("s", mode="sync", num_workers=4) as first:
        first.init("w", nd.zeros(3))
    for data_channel in (False, True):  # the pool's threads, the data channel's listener
        _refused_steps(remote, data_channel)
    threads, descriptors = _threads_and_descriptors(pid)
    for worker in range(8):
        _refused_steps(remote, data_channel=worker % 2 == 1)
    # The server's pool may start a thread or two while calls overlap; a thread per call or
    # per worker would be eight.
    bound = (threads + 2, descriptors)
    deadline = time.monotonic() + WAIT  # a call's reader thread ends as its call does
    while not _within(_threads_and_descriptors(pid), bound) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _within(_threads_and_descriptors(pid), bound)


def _within(counts: tuple[int, int], bound: tuple[int, int]) -> bool:
    return all(count <= most for count, most in zip(counts, bound))


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


def test_a_worker_whose_rank_lapsed_and_went_to_another_can_neither_step_nor_free_it(
        make_server: Callable[..., Any]) -> None:
    with make_server(worker_lease=0.5).connect() as client:
        with client.kvstore("s", mode="sync", num_workers=1) as first:
            first.init("w", nd.zeros(3))
        lapsed = client.call("JoinTraining", pb.JoinTrainingRequest(
            store="s", mode="sync", num_workers=1))
        time.sleep(0.8)  # no heartbeat for longer than the lease
        with client.kvstore("s", mode="sync", num_workers=1) as holder:
            assert holder.rank == lapsed.rank == 0
            rank, worker = lapsed.rank, lapsed.worker_id
            calls = {
                "Heartbeat": pb.HeartbeatRequest(store="s", rank=rank, worker_id=worker),
                "Barrier": pb.BarrierRequest(store="s", rank=rank, worker_id=worker),
                "OpenDataChannel": pb.OpenDataChannelRequest(store="s", rank=rank,
                                                             worker_id=worker),
            }
            for method, request in calls.items():
                with pytest.raises(FailedPrecondition, match="another worker's now"):
                    client.call(method, request)
            with pytest.raises(FailedPrecondition, match="another worker's now"):
                _step(client, rank, 1, np.ones(3, np.float32), worker)
            client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=rank,
                                                                 worker_id=worker))
            holder.pushpull("w", nd.ones(3), out=nd.zeros(3))  # still the holder's rank, step 1
            assert holder.rank == 0 and _stored(client) == [1.0, 1.0, 1.0]



def test_a_worker_back_on_its_rank_after_another_held_it_does_not_go_on_from_the_others_steps(
        make_server: Callable[..., Any]) -> None:
    with make_server(worker_lease=0.5).connect() as client:
        with client.kvstore("s", mode="async", num_workers=1) as first:
            first.init("w", nd.zeros(3))
            first.set_optimizer(opt.SGD(learning_rate=1.0))
        returning = client.call("JoinTraining", pb.JoinTrainingRequest(
            store="s", mode="async", num_workers=1))
        assert _step(client, 0, 1, np.ones(3, np.float32), returning.worker_id) == -1.0
        time.sleep(0.8)  # its rank lapses, and another worker takes it and steps twice
        other = client.call("JoinTraining", pb.JoinTrainingRequest(
            store="s", mode="async", num_workers=1))
        for step in (1, 2):
            _step(client, 0, step, np.ones(3, np.float32), other.worker_id)
        client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=0,
                                                             worker_id=other.worker_id))
        back = client.call("JoinTraining", pb.JoinTrainingRequest(
            store="s", mode="async", num_workers=1, rank=0, worker_id=returning.worker_id))
        # Its step 2 is its own next step, not a repeat of the other worker's step 2.
        assert _step(client, 0, 2, np.ones(3, np.float32), back.worker_id) == -4.0


@pytest.mark.slow  # three leases of waiting; the test above is the server's quick one
def test_a_paused_worker_that_lost_its_rank_is_told_and_leaves_the_new_holder_be(
        make_server: Callable[..., Any]) -> None:
    server = make_server(worker_lease=0.5)
    script = ("import sys; from paramstore.client import connect\n"
              "kv = connect(sys.argv[1]).kvstore('s', num_workers=1)\n"
              "print('joined', kv.rank, flush=True); sys.stdin.readline()\n"
              "try:\n    kv.barrier(); print('stepped', flush=True)\n"
              "except Exception as error:\n    print(type(error).__name__, flush=True)\n"
              "kv.close()\n")
    paused = subprocess.Popen([sys.executable, "-c", script, server.address], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert paused.stdout is not None and paused.stdin is not None
        assert paused.stdout.readline().split() == ["joined", "0"]
        paused.send_signal(signal.SIGSTOP)  # as a long pause of its process would
        with server.connect() as client, client.kvstore("s", num_workers=1) as holder:
            paused.send_signal(signal.SIGCONT)
            paused.stdin.write("step\n")
            paused.stdin.flush()
            assert paused.stdout.readline().strip() == "FailedPrecondition"  # all ranks held
            assert paused.wait(timeout=WAIT) == 0  # closed: left with its own worker_id
            client.call("Barrier", pb.BarrierRequest(store="s", rank=holder.rank))  # still live
    finally:
        paused.kill()
        paused.wait()


ANSWERS = (InvalidArgument, FailedPrecondition, Aborted)  # the refusals a mix may meet


def _mixed_worker(client: Any, seed: int, mode: str, workers: int) -> list[str]:
    """A worker doing training calls in a random order, some out of turn; the errors it got
    other than `ANSWERS`."""
    chance = random.Random(seed)
    held: Any = None
    step = 0
    unexpected = []
    for _ in range(24):
        # Mostly a worker's calls in turn; sometimes out of turn, or with a rank not its own.
        action = chance.choice(["step"] * 6 + ["barrier", "heartbeat", "leave", "optimizer",
                                               "states"] if held is not None else
                               ["join"] * 3 + ["step", "barrier", "heartbeat", "leave"])
        rank, worker = (held.rank, held.worker_id) if held is not None else \
            (chance.randrange(-1, workers + 1), chance.choice([0, 1]))
        try:
            if action == "join" and held is None:
                held, step = client.call("JoinTraining", pb.JoinTrainingRequest(
                    store="s", mode=mode, num_workers=workers, timeout_seconds=0.2)), 0
            elif action == "step":
                step += chance.choice([1] * 8 + [0, 5])  # the next step; the last again; ahead
                _step(client, rank, step, np.ones(chance.choice([3] * 9 + [4]), np.float32),
                      worker)
            elif action == "barrier":
                client.call("Barrier", pb.BarrierRequest(store="s", rank=rank, worker_id=worker))
            elif action == "heartbeat":
                client.call("Heartbeat", pb.HeartbeatRequest(store="s", rank=rank,
                                                             worker_id=worker))
            elif action == "leave":
                client.call("LeaveTraining", pb.LeaveTrainingRequest(store="s", rank=rank,
                                                                     worker_id=worker))
                held = None
            elif action == "optimizer":
                client.call("SetOptimizer", pb.SetOptimizerRequest(store="s", optimizer=(
                    chance.choice(['["sgd", {"momentum": 0.9}]', '["sgd", {}]',
                                   '["adam", {"beta1": 1.0}]', '["adamax", {"beta1": 1.0}]',
                                   '["sgd", {"lr_scheduler": 3}]']))))
            elif action == "states":
                _set_states(client, chance.choice([b"junk", opt.dumps_states(opt.SGD())]))
        except ANSWERS:
            pass
        except ParamstoreError as error:
            unexpected.append(f"{action}: {type(error).__name__}: {error}")
    return unexpected


def _set_states(client: Any, data: bytes) -> None:
    client.call("SetOptimizerStates", iter([pb.SetOptimizerStatesRequest(store="s"),
                                            pb.SetOptimizerStatesRequest(chunk=data)]))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_training_calls_mixed_from_threads_get_honest_answers_and_never_hang(
        make_server: Callable[..., Any], mode: str) -> None:
    workers = 4
    with make_server(worker_lease=1.0).connect() as client:
        with client.kvstore("s", mode=mode, num_workers=workers, timeout=0.2) as first:
            first.init("w", nd.zeros(3))
        with ThreadPoolExecutor(workers) as pool:
            mixes = [pool.submit(_mixed_worker, client, seed, mode, workers)
                     for seed in range(workers)]
            assert [mix.result(timeout=WAIT) for mix in mixes] == [[]] * workers
        value = np.array(_stored(client))
        assert value.shape == (3,) and np.isfinite(value).all()
