"""Distributed training speed: steps/s of 1, 2 and 4 sync workers against one process.

The model is the 784-1024-1024-10 MLP (relu), SGD with momentum, a global batch of
`--batch-size` split evenly among the workers. Workers are separate processes training through
a `paramstore serve` process on loopback (`Client.kvstore`, `gluon.Trainer(kvstore=kv)`); the
single-process baseline runs the same loop with a local Trainer, in the same run. Each worker
reports its steps/s after `--warmup` steps and the tensor bytes it moved per step (gradients
sent + weights received); the table shows the slowest worker (the step rate of the job).

    python bench/distributed.py [--steps 20] [--warmup 3] [--batch-size 128] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One BLAS thread per process: N worker processes on N cores compare fairly with one process,
# and none of them fights the others (or the server) for cores.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings, which it reads on import)

from paramstore.server.process import start_serve  # noqa: E402

SIZES = (784, 1024, 1024, 10)


def mlp() -> object:
    from paramstore.gluon import nn

    net = nn.Sequential()
    for units in SIZES[1:-1]:
        net.add(nn.Dense(units, activation="relu"))
    net.add(nn.Dense(SIZES[-1]))
    return net


def batch(step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(step)
    features = rng.normal(size=(size, SIZES[0])).astype(np.float32)
    return features, rng.integers(0, SIZES[-1], size=size).astype(np.float32)


def train(kvstore: object, rank: int, workers: int, steps: int, warmup: int,
          batch_size: int) -> tuple[float, float]:
    """Run `steps` steps; the steps/s of those after `warmup` and the tensor bytes the
    KVStore moved per step meanwhile (0 without one)."""
    from paramstore import autograd, gluon, nd
    from paramstore import random as ps_random

    ps_random.seed(0)
    net = mlp()
    net.initialize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 0.01, "momentum": 0.9}, kvstore=kvstore)
    share = batch_size // workers
    started, moved = 0.0, 0
    for step in range(steps):
        if step == warmup:
            started = time.perf_counter()
            moved = _moved(kvstore)
        features, labels = batch(step, batch_size)
        x = nd.array(features[rank * share:(rank + 1) * share])
        y = nd.array(labels[rank * share:(rank + 1) * share])
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch_size)
    elapsed = time.perf_counter() - started
    return (steps - warmup) / elapsed, (_moved(kvstore) - moved) / (steps - warmup)


def _moved(kvstore: object) -> int:
    return getattr(kvstore, "bytes_sent", 0) + getattr(kvstore, "bytes_received", 0)


def run_worker(address: str, workers: int, steps: int, warmup: int, batch_size: int) -> None:
    from paramstore.client import connect

    with connect(address) as client:
        kv = client.kvstore(f"bench-{workers}", mode="sync", num_workers=workers, timeout=120)
        rate, moved = train(kv, kv.rank, workers, steps, warmup, batch_size)
        kv.close()
    print(json.dumps({"rank": kv.rank, "steps_per_s": rate, "bytes_per_step": moved}))


def measure_workers(address: str, workers: int, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", address, "--workers", str(workers),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                 for _ in range(workers)]
    reports = [json.loads(process.communicate()[0].strip().splitlines()[-1])
               for process in processes]
    return {"steps_per_s": min(report["steps_per_s"] for report in reports),
            "bytes_per_step": reports[0]["bytes_per_step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.workers[0], args.steps, args.warmup, args.batch_size)
        return
    local, _ = train(None, 0, 1, args.steps, args.warmup, args.batch_size)
    print(f"model {'-'.join(map(str, SIZES))}, global batch {args.batch_size}, sgd momentum")
    print(f"{'setup':<28}{'steps/s':>10}{'vs local':>10}{'MiB moved/step/worker':>24}")
    print(f"{'single process (local)':<28}{local:>10.2f}{1.0:>10.2f}{0.0:>24.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        server, address = start_serve(Path(scratch))
        try:
            for workers in args.workers:
                found = measure_workers(address, workers, args)
                print(f"{f'{workers} sync worker(s) via server':<28}"
                      f"{found['steps_per_s']:>10.2f}{found['steps_per_s'] / local:>10.2f}"
                      f"{found['bytes_per_step'] / 2**20:>24.2f}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
