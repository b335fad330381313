"""Distributed training on loopback: a server, N worker processes, loss curves in a PNG.

`paramstore train-demo --workers N` starts a server in this process and N workers as child
processes (`python -m paramstore.client.train_demo worker ...`), which train the chapter's
tied-layer MLP (the second hidden layer shares the first's parameters) on a synthetic
classification task through `Client.kvstore`. Each worker trains on its own slice of every
global batch; the server sums their gradients and runs the optimizer.

The worker entry point is also what the end-to-end tests and `bench/distributed.py` run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 20
CLASSES = 10
TEACHER_SEED = 1234


def tied_mlp(hidden: int = 8) -> Any:
    """The chapter's net: Dense, a shared Dense used twice, and the output layer."""
    from paramstore.gluon import nn

    net = nn.Sequential()
    shared = nn.Dense(hidden, activation="relu")
    net.add(nn.Dense(hidden, activation="relu"), shared,
            nn.Dense(hidden, activation="relu", params=shared.params), nn.Dense(CLASSES))
    return net


# How a worker's steps move their data: `Client.kvstore`'s options for each.
TRANSPORTS: dict[str, dict[str, bool]] = {
    # On the server's host the data goes through shared memory and the signal through the data
    # channel; elsewhere both through the data channel; without a data channel, through gRPC.
    "shared-memory": {},
    "shared-memory-grpc": {"data_channel": False},
    "data-channel": {"shared_memory": False},
    "grpc": {"shared_memory": False, "data_channel": False},
}


def global_batch(step: int, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Step `step`'s batch of the synthetic task: labels from a fixed linear teacher."""
    teacher = np.random.default_rng(TEACHER_SEED).normal(size=(FEATURES, CLASSES))
    features = np.random.default_rng((seed, step)).normal(size=(batch_size, FEATURES))
    return features.astype(np.float32), np.argmax(features @ teacher, axis=1).astype(np.float32)


def shard(array: np.ndarray, rank: int, num_workers: int) -> np.ndarray:
    """Worker `rank`'s contiguous slice of a global batch."""
    size = len(array) // num_workers
    return array[rank * size:(rank + 1) * size]


def train_worker(args: argparse.Namespace) -> int:
    """One worker: join, train `args.steps` steps, write losses and parameters to `args.out`.

    Exit code 0 on success, 3 when a step was aborted (the error is printed and saved)."""
    from paramstore import autograd, gluon, nd
    from paramstore import random as ps_random
    from paramstore.client import connect
    from paramstore.client.errors import Aborted

    ps_random.seed(args.seed)  # every worker builds the same weights; the first init wins anyway
    net = tied_mlp(args.hidden)
    net.initialize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    client = connect(args.address)
    kv = client.kvstore(args.store, mode=args.mode, num_workers=args.workers,
                        timeout=args.timeout, **TRANSPORTS[args.transport])
    print(f"joined rank={kv.rank}", flush=True)
    # Finish the deferred initialization, then start from the store's weights: those of the
    # first worker, or of a restored snapshot when training resumes.
    net(nd.array(global_batch(0, 1)[0]))
    params = list(net.collect_params().values())
    kv.init([p.name for p in params], [p.data() for p in params])
    kv.pull([p.name for p in params], out=[p.data() for p in params])
    trainer = gluon.Trainer(net.collect_params(), args.optimizer,
                            json.loads(args.optimizer_params), kvstore=kv)
    losses: list[float] = []
    error = ""
    step = args.start_step
    retries = args.retries
    while step < args.start_step + args.steps:
        if args.stall_after is not None and step - args.start_step == args.stall_after:
            print("stalling", flush=True)
            time.sleep(3600)
        features, labels = global_batch(step, args.batch_size, args.data_seed)
        rank = kv.rank if args.mode == "sync" else 0
        parts = kv.num_workers if args.mode == "sync" else 1
        x, y = nd.array(shard(features, rank, parts)), nd.array(shard(labels, rank, parts))
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        try:
            trainer.step(args.batch_size if args.mode == "sync" else len(x))
        except Aborted as aborted:
            print(f"aborted: {aborted}", flush=True)
            error = str(aborted)
            if retries <= 0:
                break
            retries -= 1
            continue
        losses.append(float(loss.mean().asscalar()))
        print(f"step {step} loss {losses[-1]:.5f}", flush=True)
        step += 1
    kv.pull([p.name for p in params], out=[p.data() for p in params])
    if args.out:
        np.savez(args.out, losses=np.array(losses), error=np.array(error),
                 bytes_sent=kv.bytes_sent, bytes_received=kv.bytes_received,
                 **{f"param_{i}": p.data().asnumpy() for i, p in enumerate(params)})
    kv.close()
    client.close()
    return 3 if error and len(losses) < args.steps else 0


def worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paramstore.client.train_demo worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--store", default="tied-mlp")
    parser.add_argument("--mode", default="sync", choices=("sync", "async"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--start-step", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="of all workers together")
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--optimizer-params", default='{"learning_rate": 0.1}')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=0.0)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--stall-after", type=int, default=None)
    parser.add_argument("--transport", default="shared-memory", choices=TRANSPORTS,
                        help="the way steps move their data, where it can (default: shared "
                             "memory on the server's host)")
    parser.add_argument("--out", default="")
    return parser


def worker_command(address: str, **options: Any) -> list[str]:
    """The command line of one worker process; `options` are the worker flags."""
    command = [sys.executable, "-m", "paramstore.client.train_demo", "worker",
               "--address", address]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def run_demo(workers: int, steps: int, output: Path, mode: str = "sync") -> Path:
    """Start a server and `workers` worker processes, wait, plot their loss curves to
    `output`. Raises `RuntimeError` when a worker fails."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paramstore.server.app import create_server

    with tempfile.TemporaryDirectory() as scratch:
        server, port = create_server("127.0.0.1:0", data_dir=Path(scratch) / "data",
                                     worker_timeout=30.0)
        server.start()
        try:
            outs = [Path(scratch) / f"worker{i}.npz" for i in range(workers)]
            processes = [
                subprocess.Popen(worker_command(
                    f"127.0.0.1:{port}", mode=mode, workers=workers, steps=steps,
                    optimizer="adam", optimizer_params='{"learning_rate": 0.03}', out=out,
                ), stdout=subprocess.DEVNULL)
                for out in outs
            ]
            codes = [process.wait() for process in processes]
            if any(codes):
                raise RuntimeError(f"workers exited with codes {codes}")
            curves = [np.load(out)["losses"] for out in outs]
        finally:
            server.stop(None).wait()  # its last snapshots are written before the folder goes
    figure, axes = plt.subplots(figsize=(7, 4))
    for index, curve in enumerate(curves):
        axes.plot(curve, label=f"worker {index}")
    axes.set_xlabel("step")
    axes.set_ylabel("training loss (own shard)")
    axes.set_title(f"tied-layer MLP, {workers} {mode} workers through paramstore")
    axes.legend()
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """`train-demo [--workers N] [--steps S] [--mode sync|async] [--output PNG]`, or `worker`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return train_worker(worker_parser().parse_args(argv[1:]))
    parser = argparse.ArgumentParser(
        prog="paramstore train-demo",
        description="Start a server on loopback and N worker processes that train the "
                    "chapter's tied-layer MLP on a synthetic task through it, then plot each "
                    "worker's loss curve to a PNG. Needs no running server.")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="worker processes (default 2)")
    parser.add_argument("--steps", type=int, default=100, metavar="S",
                        help="training steps of each worker (default 100)")
    parser.add_argument("--mode", default="sync", choices=("sync", "async"),
                        help="sync: one update per step from all workers' gradients; async: "
                             "each worker's gradients applied on arrival (default sync)")
    parser.add_argument("--output", type=Path, default=Path("train-demo-loss.png"),
                        metavar="PNG", help="where to write the plot (default "
                                            "train-demo-loss.png)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.steps < 1:
        parser.error("--workers and --steps must be at least 1")
    written = run_demo(args.workers, args.steps, args.output, args.mode)
    print(f"loss curves written to {os.path.abspath(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
