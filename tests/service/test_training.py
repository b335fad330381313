"""Distributed training end to end: real worker processes train through a real server.

Each worker is `python -m paramstore.client.train_demo worker` (the demo's worker), training
the chapter's tied-layer MLP; results come back in an .npz file per worker.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_process import wait_for_line
from training_runs import TRANSPORTS, train_in_one_process

from paramstore import autograd, gluon, nd
from paramstore import random as ps_random
from paramstore.client.errors import Aborted, FailedPrecondition, InvalidArgument
from paramstore.client.train_demo import global_batch, tied_mlp, worker_command

WORKER_SECONDS = 60  # an upper bound for a worker's run: a hang fails the test, never blocks it


def start_workers(address: str, outs: list[Path], **options: Any) -> list[subprocess.Popen]:
    return [subprocess.Popen(worker_command(address, out=out, **options),
                             stdout=subprocess.PIPE, text=True) for out in outs]


def finish(processes: list[subprocess.Popen]) -> list[int]:
    return [process.wait(timeout=WORKER_SECONDS) for process in processes]


def parameters(result: Any) -> list[np.ndarray]:
    names = sorted((name for name in result.files if name.startswith("param_")),
                   key=lambda name: int(name.split("_")[1]))
    return [result[name] for name in names]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_sync_workers_on_half_batches_end_where_one_process_on_the_union_ends(
    make_server: Callable[..., Any], tmp_path: Path, transport: str,
) -> None:
    server = make_server()
    outs = [tmp_path / "w0.npz", tmp_path / "w1.npz"]
    options = dict(workers=2, steps=8, batch_size=32, transport=transport,
                   optimizer_params='{"learning_rate": 0.5, "momentum": 0.9}')
    assert finish(start_workers(server.address, outs, **options)) == [0, 0]

    expected = train_in_one_process(8, 32, "sgd", {"learning_rate": 0.5, "momentum": 0.9})
    for out in outs:
        for got, want in zip(parameters(np.load(out)), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_async_workers_reduce_the_loss(make_server: Callable[..., Any], tmp_path: Path) -> None:
    server = make_server()
    outs = [tmp_path / "w0.npz", tmp_path / "w1.npz"]
    options = dict(mode="async", workers=2, steps=40, batch_size=32, hidden=32,
                   optimizer="adam", optimizer_params='{"learning_rate": 0.02}')
    assert finish(start_workers(server.address, outs, **options)) == [0, 0]

    ps_random.seed(0)
    net = tied_mlp(hidden=32)
    net.initialize()
    before = held_out_loss(net)
    for param, trained in zip(net.collect_params().values(), parameters(np.load(outs[0]))):
        param.set_data(nd.array(trained))
    assert held_out_loss(net) < 0.9 * before


def held_out_loss(net: Any) -> float:
    features, labels = global_batch(10_000, 512)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(nd.array(features)), nd.array(labels))
    return float(loss.mean().asscalar())


def test_a_stalled_worker_fails_the_step_with_its_rank_instead_of_hanging(
    make_server: Callable[..., Any], tmp_path: Path,
) -> None:
    server = make_server()
    outs = [tmp_path / "w0.npz", tmp_path / "w1.npz"]
    options = dict(workers=2, steps=6, timeout=1.5)
    healthy = start_workers(server.address, outs[:1], **options)[0]
    wait_for_line(healthy, "joined rank=0")
    stalled = start_workers(server.address, outs[1:], stall_after=2, **options)[0]
    try:
        assert healthy.wait(timeout=WORKER_SECONDS) == 3
    finally:
        stalled.kill()
        stalled.wait()
    error = str(np.load(outs[0])["error"])
    assert "rank [1]" in error and "within 1.5 s" in error


def test_a_killed_worker_is_replaced_by_a_rejoining_one(
    make_server: Callable[..., Any], tmp_path: Path,
) -> None:
    server = make_server()
    options = dict(workers=2, batch_size=32, timeout=3)
    survivor = start_workers(server.address, [tmp_path / "w0.npz"], steps=6, retries=5,
                             **options)[0]
    wait_for_line(survivor, "joined rank=0")
    doomed = start_workers(server.address, [tmp_path / "dead.npz"], steps=6, stall_after=2,
                           **options)[0]
    wait_for_line(doomed, "joined rank=1")
    wait_for_line(doomed, "stalling")
    doomed.kill()
    doomed.wait()
    wait_for_line(survivor, "aborted")

    replacement = start_workers(server.address, [tmp_path / "w1.npz"], steps=4, start_step=2,
                                **options)[0]
    wait_for_line(replacement, "joined rank=1")
    assert finish([survivor, replacement]) == [0, 0]
    for got, want in zip(parameters(np.load(tmp_path / "w0.npz")),
                         parameters(np.load(tmp_path / "w1.npz"))):
        np.testing.assert_array_equal(got, want)


def test_training_resumes_exactly_after_a_server_restart(
    spawn_server: Callable[..., Any], tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    options = dict(workers=1, batch_size=16, optimizer="adam",
                   optimizer_params='{"learning_rate": 0.01}')
    server = spawn_server(data_dir, "--snapshot-every", "4")
    assert finish(start_workers(server.address, [tmp_path / "a.npz"], steps=4, **options)) == [0]
    wait_for_file(data_dir / "stores" / "tied-mlp", "*/snapshots/*.json")  # committed
    server.process.kill()
    server.process.wait()

    restarted = spawn_server(data_dir)
    assert finish(start_workers(restarted.address, [tmp_path / "b.npz"], steps=4,
                                start_step=4, **options)) == [0]

    expected = train_in_one_process(8, 16, "adam", {"learning_rate": 0.01})
    for got, want in zip(parameters(np.load(tmp_path / "b.npz")), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def wait_for_file(folder: Path, pattern: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        assert time.monotonic() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.05)


def test_joining_with_another_worker_count_is_refused(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        client.kvstore("mlp", mode="sync", num_workers=2)
        with pytest.raises(FailedPrecondition, match="2 workers"):
            client.kvstore("mlp", mode="sync", num_workers=3)


def test_the_first_init_of_a_key_wins(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        first = client.kvstore("kv", mode="async", num_workers=2)
        second = client.kvstore("kv", mode="async", num_workers=2)
        first.init("w", nd.ones((2, 3)))
        second.init("w", nd.zeros((2, 3)))
        out = nd.zeros((2, 3))
        second.pull("w", out=out)
    np.testing.assert_array_equal(out.asnumpy(), np.ones((2, 3)))


def test_train_demo_plots_the_workers_loss_curves_to_a_png(tmp_path: Path) -> None:
    from paramstore.client.cli import main

    output = tmp_path / "curves.png"
    assert main(["train-demo", "--workers", "2", "--steps", "10", "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tied_parameters_train_as_one_key(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("tied", mode="sync", num_workers=1)
        ps_random.seed(0)
        net = tied_mlp()
        net.initialize()
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore=kv)
        features, labels = global_batch(0, 8)
        with autograd.record():
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(nd.array(features)),
                                                         nd.array(labels))
        loss.backward()
        trainer.step(8)
        stored = list(client.store("tied").collect_params().keys())

    shared = net[1].weight
    assert shared is net[2].weight
    assert stored.count(shared.name) == 1
    assert len(stored) == len({id(p) for p in net.collect_params().values()})


class _UnknownOptimizer:
    def dumps(self) -> str:
        return '["pickled_code", {}]'


def test_an_optimizer_the_server_does_not_know_is_refused(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1)
        with pytest.raises(InvalidArgument, match="pickled_code"):
            kv.set_optimizer(_UnknownOptimizer())


def test_a_gradient_of_the_wrong_shape_is_refused(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1)
        kv.init("w", nd.ones((2, 3)))
        with pytest.raises(FailedPrecondition, match=r"float32\[3, 2\]"):
            kv.push("w", nd.ones((3, 2)))


def test_a_barrier_returns_once_every_worker_reached_it(make_server: Callable[..., Any]) -> None:
    server = make_server()
    with server.connect() as first_client, server.connect() as second_client:
        first = first_client.kvstore("mlp", mode="sync", num_workers=2, timeout=10)
        second = second_client.kvstore("mlp", mode="sync", num_workers=2, timeout=10)
        waiting = threading.Thread(target=first.barrier)
        waiting.start()
        second.barrier()
        waiting.join(timeout=10)
        assert not waiting.is_alive()


def test_a_barrier_missing_a_worker_is_aborted_naming_it(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=2, timeout=0.3)
        with pytest.raises(Aborted, match=r"rank \[1\]"):
            kv.barrier()
