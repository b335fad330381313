"""Distributed training speed: steps/s of 1, 2 and 4 sync workers against one process.

The model is the 784-1024-1024-10 MLP (relu), SGD with momentum, a global batch of
`--batch-size` split evenly among the workers. Workers are separate processes training through
a `paramstore serve` process on loopback (`Client.kvstore`, `gluon.Trainer(kvstore=kv)`); the
single-process baseline runs the same loop with a local Trainer, in the same run. Each worker
reports its steps/s after `--warmup` steps, the tensor bytes it moved per step (gradients
sent + weights received) and how a step splits between computing (forward and backward) and
waiting on communication (`trainer.step`); the table shows the slowest worker (the step rate of
the job). On a machine whose other load varies, steps/s varies with it; the CPU seconds a step
costs vary far less: the table gives them per step for a worker (all its threads, after the
warmup) and for the server (its process from the end of the warmup, read from /proc), so that a
change is judged by the CPU it removes. Workers on the server's host move their data through shared
memory and signal their steps on the data channel (the "shm grpc" rows signal them on the gRPC
step stream instead: their baseline in the same run); the runs repeat with 2-bit gradient
compression (`--threshold`) and over the socket (`shared_memory=False`: the path of workers on
other hosts), there also with float16 gradients.
The socket rows go through the server's data channel (on by default: a TCP connection outside
gRPC); the "socket grpc" rows keep the steps on gRPC (`data_channel=False`), the baseline the
data channel is measured against in the same run.

`--compare-mxnet PYTHON` runs MXNet 1.9.1 `dist_sync` (ps-lite, one server) and
`--compare-torch PYTHON` PyTorch DDP (gloo) on the same workload with those interpreters, in the
same run; each framework's "vs local" is against its own single process, and the closing lines
give paramstore's steps/s as a ratio of theirs, beside the CPU a step costs each whole job.

    python bench/distributed.py [--steps 30] [--warmup 5] [--batch-size 128] [--workers 1 2 4]
        [--threshold 0.5] [--compare-mxnet PYTHON] [--compare-torch PYTHON]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# One BLAS thread per process: N worker processes on N cores compare fairly with one process,
# and none of them fights the others (or the server) for cores.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings, which it reads on import)

SIZES = (784, 1024, 1024, 10)
LEARNING_RATE = 0.01
MOMENTUM = 0.9
WORKER_SECONDS = 600  # a hung run fails the benchmark instead of blocking it
ROLES = ("paramstore", "mxnet", "torch")
WARM = "warm"  # a worker's line when its warmup ends: the server's CPU is counted from there


def batch(step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(step)
    features = rng.normal(size=(size, SIZES[0])).astype(np.float32)
    return features, rng.integers(0, SIZES[-1], size=size).astype(np.float32)


class Clock:
    """Steps/s after the warmup, and the seconds spent computing and communicating."""

    def __init__(self, warmup: int, announce: bool) -> None:
        self.warmup = warmup
        self.announce = announce  # a worker process tells the bench when its clock starts
        self.step = 0
        self.started = 0.0
        self.cpu_started = 0.0
        self.compute = 0.0
        self.communicate = 0.0

    def tick(self) -> float:
        if self.step == self.warmup:
            self.started = time.perf_counter()
            self.cpu_started = time.process_time()
            self.compute = self.communicate = 0.0
            if self.announce:
                print(WARM, flush=True)
        self.step += 1
        return time.perf_counter()

    def report(self, moved: float = 0.0) -> dict[str, float]:
        steps = self.step - self.warmup
        return {"steps_per_s": steps / (time.perf_counter() - self.started),
                "bytes_per_step": moved / steps,
                "compute_ms": 1e3 * self.compute / steps,
                "communicate_ms": 1e3 * self.communicate / steps,
                "worker_cpu_ms": 1e3 * (time.process_time() - self.cpu_started) / steps}


def gluon_steps(gluon: Any, nd: Any, autograd: Any, rank: int, workers: int,
                args: argparse.Namespace, make_step: Any, at_warmup: Any = None) -> Clock:
    """The benchmark's loop in Gluon's API, which paramstore and MXNet share: build the MLP,
    then forward, backward and `make_step(net)()` for each step of this worker's batch share.
    `at_warmup()` runs when the clock starts and once more at the end."""
    net = gluon.nn.Sequential()
    for units in SIZES[1:-1]:
        net.add(gluon.nn.Dense(units, activation="relu"))
    net.add(gluon.nn.Dense(SIZES[-1]))
    net.initialize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    step_once = make_step(net)
    share = args.batch_size // workers
    clock = Clock(args.warmup, _in_worker(args))
    for step in range(args.steps):
        if step == args.warmup and at_warmup is not None:
            at_warmup()
        start = clock.tick()
        features, labels = batch(step, args.batch_size)
        x = nd.array(features[rank * share:(rank + 1) * share])
        y = nd.array(labels[rank * share:(rank + 1) * share])
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        computed = time.perf_counter()
        step_once()
        clock.compute += computed - start
        clock.communicate += time.perf_counter() - computed
    if at_warmup is not None:
        at_warmup()
    return clock


# ---- paramstore ------------------------------------------------------------------------------

def train(kvstore: Any, rank: int, workers: int, args: argparse.Namespace,
          compression: dict[str, Any] | None = None) -> dict[str, float]:
    """Run the steps through `kvstore` (None: a local Trainer); the figures after the warmup."""
    from paramstore import autograd, gluon, nd
    from paramstore import random as ps_random

    ps_random.seed(0)

    def make_step(net: Any) -> Any:
        trainer = gluon.Trainer(net.collect_params(), "sgd",
                                {"learning_rate": LEARNING_RATE, "momentum": MOMENTUM},
                                kvstore=kvstore, compression_params=compression)
        return lambda: trainer.step(args.batch_size)

    moved = [0]
    clock = gluon_steps(gluon, nd, autograd, rank, workers, args, make_step,
                        lambda: moved.append(_moved(kvstore)))
    return clock.report(moved[-1] - moved[1])


def _moved(kvstore: Any) -> int:
    return getattr(kvstore, "bytes_sent", 0) + getattr(kvstore, "bytes_received", 0)


def paramstore_worker(args: argparse.Namespace) -> dict[str, float]:
    from paramstore.client import connect
    from paramstore.client.train_demo import TRANSPORTS

    compression = json.loads(args.compression) if args.compression else None
    kind = compression["type"] if compression else "plain"
    store = f"bench-{args.workers[0]}-{kind}-{args.transport}"
    with connect(args.address) as client:
        kv = client.kvstore(store, mode="sync", num_workers=args.workers[0], timeout=120,
                            **TRANSPORTS[args.transport])
        found = train(kv, kv.rank, args.workers[0], args, compression)
        if TRANSPORTS[args.transport].get("data_channel", True) and not kv.data_channel:
            raise SystemExit("the worker fell back to gRPC: the data channel row would lie")
        kv.close()
    return found


# ---- MXNet dist_sync and PyTorch DDP, run with their own interpreters ------------------------

def mxnet_worker(args: argparse.Namespace) -> dict[str, float]:
    import mxnet as mx
    from mxnet import autograd, gluon, nd

    mx.random.seed(0)
    kv = mx.kv.create("dist_sync") if args.workers[0] else None
    rank, workers = (kv.rank, kv.num_workers) if kv else (0, 1)
    # The engine is asynchronous: start and stop the clock on an idle engine.
    clock = gluon_steps(gluon, nd, autograd, rank, workers, args,
                        lambda net: _mxnet_stepper(mx, net, kv, args), nd.waitall)
    return clock.report()


def _mxnet_stepper(mx: Any, net: Any, kv: Any, args: argparse.Namespace) -> Any:
    """`trainer.step`, or with compression the KVStore calls it stands for: MXNet 1.9.1's
    Trainer refuses compression on a dist store (its pushpull does not support it)."""
    optimizer_params = {"learning_rate": LEARNING_RATE, "momentum": MOMENTUM}
    if not args.compression:
        trainer = mx.gluon.Trainer(net.collect_params(), "sgd", optimizer_params,
                                   kvstore=kv or "device")
        return lambda: trainer.step(args.batch_size)
    net(mx.nd.zeros((1, SIZES[0])))  # finish the deferred initialization
    params = list(net.collect_params().values())
    kv.set_gradient_compression(json.loads(args.compression))
    kv.set_optimizer(mx.optimizer.SGD(rescale_grad=1 / args.batch_size, **optimizer_params))
    for index, param in enumerate(params):
        kv.init(index, param.data())
        kv.pull(index, out=param.data())

    def step() -> None:
        for index, param in enumerate(params):
            kv.push(index, param.grad(), priority=-index)
            kv.pull(index, out=param.data(), priority=-index)

    return step


def torch_worker(args: argparse.Namespace) -> dict[str, float]:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.manual_seed(0)
    workers = args.workers[0] or 1
    rank = int(os.environ.get("RANK", "0"))
    layers: list[Any] = []
    for inputs, outputs in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(inputs, outputs), torch.nn.ReLU()]
    net: Any = torch.nn.Sequential(*layers[:-1])
    if args.workers[0]:
        dist.init_process_group("gloo", init_method=args.address, rank=rank,
                                world_size=workers)
        net = torch.nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    share = args.batch_size // workers
    clock = Clock(args.warmup, _in_worker(args))
    for step in range(args.steps):
        clock.tick()
        features, labels = batch(step, args.batch_size)
        x = torch.from_numpy(features[rank * share:(rank + 1) * share])
        y = torch.from_numpy(labels[rank * share:(rank + 1) * share]).long()
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    found = clock.report()
    if args.workers[0]:
        dist.destroy_process_group()
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_command(python: str, role: str, address: str, workers: int,
                    args: argparse.Namespace, compression: str = "") -> list[str]:
    return [python, __file__, f"--{role}-worker", "--address", address,
            "--workers", str(workers), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch-size", str(args.batch_size), "--compression", compression]


def _in_worker(args: argparse.Namespace) -> bool:
    return any(getattr(args, f"{role}_worker", False) for role in ROLES)


def _await_warmup(process: subprocess.Popen[str]) -> None:
    """Read `process`'s output up to its warmup line (or its end). A worker hung before it
    is left to `communicate`'s timeout: the benchmark fails instead of blocking."""
    def read() -> None:
        for line in iter(process.stdout.readline if process.stdout else str, ""):
            if line.strip() == WARM:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(WORKER_SECONDS)


def cpu_seconds(pid: int) -> float:
    """The CPU seconds (user and system, all threads) process `pid` used so far; NaN where
    /proc does not tell."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _collect(processes: list[subprocess.Popen[str]], args: argparse.Namespace,
             server: int | None = None) -> dict[str, float]:
    """The slowest worker's figures (the job's step rate), the mean CPU per step of the
    workers, and that of process `server` from the end of their warmup on (its start-up and
    the workers' joins left out); raises when a worker failed."""
    for process in processes:  # sync workers end their warmup together
        _await_warmup(process)
    server_started = cpu_seconds(server) if server is not None else math.nan
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=WORKER_SECONDS)
        if process.returncode:
            raise RuntimeError(f"a benchmark worker exited with {process.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    server_cpu = cpu_seconds(server) - server_started if server is not None else math.nan
    slowest = min(reports, key=lambda report: report["steps_per_s"])
    return {**slowest, "bytes_per_step": reports[0]["bytes_per_step"],
            "worker_cpu_ms": sum(report["worker_cpu_ms"] for report in reports) / len(reports),
            "server_cpu_ms": 1e3 * server_cpu / (args.steps - args.warmup)}


def measure_paramstore(server: int, address: str, workers: int, args: argparse.Namespace,
                       compression: str = "", transport: str = "shared-memory"
                       ) -> dict[str, float]:
    """`workers` paramstore workers training through the server of process id `server`."""
    command = _worker_command(sys.executable, "paramstore", address, workers, args, compression)
    command += ["--transport", transport]
    return _collect([subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                     for _ in range(workers)], args, server)


def measure_mxnet(python: str, workers: int, args: argparse.Namespace,
                  compression: str = "") -> dict[str, float]:
    """`workers` dist_sync workers with one ps-lite server and scheduler on loopback
    (workers=0: one process with a local Trainer)."""
    command = _worker_command(python, "mxnet", "", workers, args, compression)
    if not workers:
        return _collect([subprocess.Popen(command, stdout=subprocess.PIPE, text=True)], args)
    env = {**os.environ, "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": str(_free_port()),
           "DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": str(workers), "DMLC_INTERFACE": "lo"}
    # The scheduler and the server run inside `import mxnet` and exit when the workers finish.
    helpers = [subprocess.Popen([python, "-c", "import mxnet"], env={**env, "DMLC_ROLE": role})
               for role in ("scheduler", "server")]
    try:
        return _collect([subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                          env={**env, "DMLC_ROLE": "worker"})
                         for _ in range(workers)], args, helpers[1].pid)
    finally:
        for helper in helpers:
            helper.wait(timeout=WORKER_SECONDS)


def measure_torch(python: str, workers: int, args: argparse.Namespace) -> dict[str, float]:
    """`workers` DDP processes (gloo) on loopback (workers=0: one process, no DDP)."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    command = _worker_command(python, "torch", address, workers, args)
    return _collect([subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, "RANK": str(rank)})
                     for rank in range(max(workers, 1))], args)


def _job_cpu(found: dict[str, float], workers: int) -> float:
    """The CPU ms a step costs the whole job: every worker and the server (none for DDP)."""
    server = found.get("server_cpu_ms", math.nan)
    return found["worker_cpu_ms"] * workers + (0.0 if math.isnan(server) else server)


# ---- the table -------------------------------------------------------------------------------

def row(label: str, found: dict[str, float], local: float, split: bool = True) -> None:
    moved = f"{found['bytes_per_step'] / 2**20:.2f}" if split else "-"
    timing = (f"{found['compute_ms']:>12.1f}{found['communicate_ms']:>10.1f}" if split
              else f"{'-':>12}{'-':>10}")
    server_cpu = found.get("server_cpu_ms", math.nan)
    cpu = f"{found['worker_cpu_ms']:>12.1f}" + (f"{'-':>12}" if math.isnan(server_cpu)
                                                 else f"{server_cpu:>12.1f}")
    print(f"{label:<42}{found['steps_per_s']:>10.2f}{found['steps_per_s'] / local:>10.2f}"
          f"{moved:>24}{timing}{cpu}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of every measurement; the table keeps each one's best")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="the 2-bit compression threshold of the compressed runs")
    parser.add_argument("--compare-mxnet", metavar="PYTHON")
    parser.add_argument("--compare-torch", metavar="PYTHON")
    for role in ROLES:
        parser.add_argument(f"--{role}-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--compression", default="", help=argparse.SUPPRESS)
    parser.add_argument("--transport", default="shared-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for role, run in (("paramstore", paramstore_worker), ("mxnet", mxnet_worker),
                      ("torch", torch_worker)):
        if getattr(args, f"{role}_worker"):
            print(json.dumps(run(args)))
            return

    # Imported here: the MXNet and PyTorch workers run this file in venvs without paramstore.
    from paramstore.server.process import start_serve

    two_bit = json.dumps({"type": "2bit", "threshold": args.threshold})
    fp16 = json.dumps({"type": "fp16"})
    ours = {"": ("", "shared-memory"), ", shm grpc": ("", "shared-memory-grpc"),
            ", 2bit": (two_bit, "shared-memory"),
            ", socket": ("", "data-channel"), ", socket 2bit": (two_bit, "data-channel"),
            ", socket fp16": (fp16, "data-channel"), ", socket grpc": ("", "grpc"),
            ", socket grpc 2bit": (two_bit, "grpc")}
    found: dict[tuple[str, int, str], dict[str, float]] = {}  # (framework, workers, setup)

    def keep(key: tuple[str, int, str], figures: dict[str, float]) -> None:
        if key not in found or figures["steps_per_s"] > found[key]["steps_per_s"]:
            found[key] = figures

    # Every framework's runs interleave, worker count by worker count, and repeat: a machine
    # whose load changes during the run then shifts all of them alike.
    with tempfile.TemporaryDirectory() as scratch:
        server, address = start_serve(Path(scratch))
        try:
            for _ in range(args.repeat):
                keep(("paramstore", 0, ""), train(None, 0, 1, args))
                if args.compare_mxnet:
                    keep(("mxnet", 0, ""), measure_mxnet(args.compare_mxnet, 0, args))
                if args.compare_torch:
                    keep(("torch", 0, ""), measure_torch(args.compare_torch, 0, args))
                for workers in args.workers:
                    for label, (how, transport) in ours.items():
                        keep(("paramstore", workers, label),
                             measure_paramstore(server.pid, address, workers, args, how,
                                                transport))
                    if args.compare_mxnet:
                        for label, how in (("", ""), (", 2bit", two_bit)):
                            keep(("mxnet", workers, label),
                                 measure_mxnet(args.compare_mxnet, workers, args, how))
                    if args.compare_torch:
                        keep(("torch", workers, ""),
                             measure_torch(args.compare_torch, workers, args))
        finally:
            server.terminate()
            server.wait()

    print(f"model {'-'.join(map(str, SIZES))}, global batch {args.batch_size}, sgd momentum, "
          f"2bit threshold {args.threshold}, best of {args.repeat}")
    print(f"{'setup':<42}{'steps/s':>10}{'vs local':>10}{'MiB moved/step/worker':>24}"
          f"{'compute ms':>12}{'comm ms':>10}{'worker CPU':>12}{'server CPU':>12}"
          "  (CPU: ms per step)")
    local = found["paramstore", 0, ""]["steps_per_s"]
    row("single process (local)", found["paramstore", 0, ""], local)
    for workers in args.workers:
        for label in ours:
            row(f"{workers} sync worker(s) via server{label}", found["paramstore", workers, label],
                local)
    names = {"mxnet": ("mxnet single process", "mxnet dist_sync worker(s)"),
             "torch": ("torch single process", "torch ddp worker(s)")}
    for framework, (single, many) in names.items():
        if (framework, 0, "") not in found:
            continue
        theirs_local = found[framework, 0, ""]["steps_per_s"]
        row(single, found[framework, 0, ""], theirs_local, split=False)
        for (name, workers, label), figures in found.items():
            if name == framework and workers:
                row(f"{workers} {many}{label}", figures, theirs_local, split=False)
    for (framework, workers, label), figures in found.items():
        if framework == "paramstore" or not workers:
            continue
        for mine in ([label, ", socket" + (" 2bit" if label else ""),
                      ", socket grpc" + (" 2bit" if label else "")]
                     + ([", 2bit", ", socket 2bit"] if not label else [])):
            paramstore = found["paramstore", workers, mine]
            ratio = paramstore["steps_per_s"] / figures["steps_per_s"]
            print(f"paramstore{mine.replace(',', '')} / {framework}{label.replace(',', '')} "
                  f"steps/s, {workers} worker(s): {ratio:.2f}; CPU ms per step, workers and "
                  f"server: {_job_cpu(paramstore, workers):.1f} against "
                  f"{_job_cpu(figures, workers):.1f}")


if __name__ == "__main__":
    main()
