"""Training-step throughput of the engine as a ratio to a baseline measured in the same run.

Three workloads: (a) a 784-1024-1024-10 MLP on a batch of 256 (dominated by matrix products: the
ratio to hand-written NumPy shows what the engine adds to the arithmetic), (b) the chapter's
nested net, 4 x (Dense 32, Dense 16) then Dense 10, on a (2, 20) batch (tiny arrays: the ratio
shows per-op overhead) and (c) LeNet (Conv2D 6@5x5, MaxPool, Conv2D 16@5x5, MaxPool, Dense 120,
84, 10) on a batch of 64 28x28 images, against PyTorch eager. Each step is forward, softmax
cross-entropy, backward and an SGD update. Runs of the sides alternate so that a noisy neighbour
slows all of them; the best of the rounds is reported. NumPy's BLAS and PyTorch run on the same
number of threads (`--threads`, default 1). PyTorch is measured when it can be imported, from
this environment or from the venv named by `--torch-venv`:

    python bench/engine.py [--rounds 9] [--threads 1] [--torch-venv /path/to/venv]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def _threads_from_argv() -> str:
    # BLAS reads its thread count when NumPy loads, so it is set before the imports below.
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


THREADS = _threads_from_argv()
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = THREADS

import numpy as np  # noqa: E402

from paramstore import autograd, gluon, nd  # noqa: E402
from paramstore.gluon import nn  # noqa: E402

LEARNING_RATE = 0.01


def mlp_layers() -> list[tuple[int, int, bool]]:
    return [(784, 1024, True), (1024, 1024, True), (1024, 10, False)]


def nested_layers() -> list[tuple[int, int, bool]]:
    layers = []
    width = 20
    for _ in range(4):
        layers += [(width, 32, True), (32, 16, True)]
        width = 16
    return layers + [(16, 10, False)]


def numpy_step(layers: list[tuple[int, int, bool]], batch: int) -> Callable[[], None]:
    """One SGD step written by hand: explicit matmuls forward and backward."""
    rng = np.random.default_rng(0)
    weights = [rng.uniform(-0.07, 0.07, (o, i)).astype(np.float32) for i, o, _ in layers]
    biases = [np.zeros(o, np.float32) for _, o, _ in layers]
    x = rng.uniform(size=(batch, layers[0][0])).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    rows = np.arange(batch)

    def step() -> None:
        activations = [x]
        h = x
        for (_, _, relu), w, b in zip(layers, weights, biases):
            h = h @ w.T + b
            if relu:
                h = np.maximum(h, 0)
            activations.append(h)
        shifted = h - h.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        grad = probs
        grad[rows, labels] -= 1
        grad /= batch
        for index in range(len(layers) - 1, -1, -1):
            inputs = activations[index]
            grad_w = grad.T @ inputs
            grad_b = grad.sum(axis=0)
            if index:
                grad = grad @ weights[index]
                if layers[index - 1][2]:
                    grad *= activations[index] > 0
            weights[index] -= LEARNING_RATE * grad_w
            biases[index] -= LEARNING_RATE * grad_b

    return step


def engine_step(
    layers: list[tuple[int, int, bool]], batch: int, nested: bool
) -> Callable[[], None]:
    """The same step with paramstore's Gluon API, as a user writes it."""
    def dense(units: int, relu: bool) -> nn.Dense:
        return nn.Dense(units, activation="relu" if relu else None)

    net = nn.Sequential()
    if nested:
        for _ in range(4):
            pair = nn.Sequential()
            pair.add(dense(32, True), dense(16, True))
            net.add(pair)
        net.add(dense(10, False))
    else:
        net.add(*(dense(units, relu) for _, units, relu in layers))
    return gluon_step(net, (batch, layers[0][0]))


def gluon_step(net: nn.Block, shape: tuple[int, ...]) -> Callable[[], None]:
    """One SGD step of `net` on a fixed batch of `shape` with ten classes, as a user writes it."""
    net.initialize()
    rng = np.random.default_rng(0)
    x = nd.array(rng.uniform(size=shape))
    labels = nd.array(rng.integers(0, 10, shape[0]))
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LEARNING_RATE})

    def step() -> None:
        with autograd.record():
            value = loss(net(x), labels)
        value.backward()
        trainer.step(shape[0])

    return step


def import_torch(venv: str | None) -> object | None:
    """PyTorch from this environment, else from `venv`'s site-packages (searched last, so
    NumPy stays this environment's); None when neither has it."""
    if venv:
        sys.path.extend(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(THREADS))
    return torch


def torch_step(layers: list[tuple[int, int, bool]], batch: int) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    modules: list = []
    for i, o, relu in layers:
        modules.append(torch.nn.Linear(i, o))
        if relu:
            modules.append(torch.nn.ReLU())
    return torch_sgd_step(torch, torch.nn.Sequential(*modules), (batch, layers[0][0]))


def torch_sgd_step(torch: Any, net: Any, shape: tuple[int, ...]) -> Callable[[], None]:
    """The same SGD step in PyTorch eager."""
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    x = torch.rand(*shape)
    labels = torch.randint(0, 10, (shape[0],))
    loss = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad()
        loss(net(x), labels).backward()
        optimizer.step()

    return step


def lenet_engine_step(batch: int) -> Callable[[], None]:
    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(6, 5, activation="relu"), nn.MaxPool2D(),
        nn.Conv2D(16, 5, activation="relu"), nn.MaxPool2D(),
        nn.Dense(120, activation="relu"), nn.Dense(84, activation="relu"), nn.Dense(10),
    )
    return gluon_step(net, (batch, 1, 28, 28))


def lenet_torch_step(batch: int) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    t = torch.nn
    net = t.Sequential(
        t.Conv2d(1, 6, 5), t.ReLU(), t.MaxPool2d(2), t.Conv2d(6, 16, 5), t.ReLU(), t.MaxPool2d(2),
        t.Flatten(), t.Linear(256, 120), t.ReLU(), t.Linear(120, 84), t.ReLU(), t.Linear(84, 10),
    )
    return torch_sgd_step(torch, net, (batch, 1, 28, 28))


def steps_per_second(step: Callable[[], None], seconds: float) -> float:
    step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        count += 1
    return count / elapsed


def best_rates(sides: dict[str, Callable[[], None]], rounds: int, seconds: float) -> dict:
    best = {side: 0.0 for side in sides}
    for _ in range(rounds):
        for side, step in sides.items():
            best[side] = max(best[side], steps_per_second(step, seconds))
    return best


def compare(name: str, layers: list, batch: int, nested: bool, rounds: int, seconds: float) -> None:
    sides = {"numpy": numpy_step(layers, batch), "paramstore": engine_step(layers, batch, nested)}
    torch = torch_step(layers, batch)
    if torch is not None:
        sides["pytorch"] = torch
    best = best_rates(sides, rounds, seconds)
    print(f"{name}: hand-written NumPy {best['numpy']:.1f} steps/s")
    for side in sides:
        if side != "numpy":
            ratio = best[side] / best["numpy"]
            print(f"  {side:<11} {best[side]:9.1f} steps/s  ratio to NumPy {ratio:.2f}")


def compare_lenet(batch: int, rounds: int, seconds: float) -> None:
    sides = {"paramstore": lenet_engine_step(batch)}
    torch = lenet_torch_step(batch)
    if torch is not None:
        sides["pytorch"] = torch
    best = best_rates(sides, rounds, seconds)
    name = f"(c) LeNet, batch {batch}"
    if torch is None:
        print(f"{name}: paramstore {best['paramstore']:.1f} steps/s (PyTorch not found)")
        return
    print(f"{name}: PyTorch eager {best['pytorch']:.1f} steps/s")
    ratio = best["paramstore"] / best["pytorch"]
    print(f"  {'paramstore':<11} {best['paramstore']:9.1f} steps/s  ratio to PyTorch {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.5, help="per side per round")
    parser.add_argument("--threads", default="1", help="BLAS and PyTorch threads")
    parser.add_argument("--torch-venv", help="a venv with PyTorch, when this one has none")
    parser.add_argument("--only", choices=["mlp", "nested", "lenet"], help="one workload")
    args = parser.parse_args()
    import_torch(args.torch_venv)
    print(f"threads: {THREADS}")
    if args.only in (None, "mlp"):
        compare("(a) MLP 784-1024-1024-10, batch 256", mlp_layers(), 256, False, args.rounds,
                args.seconds)
    if args.only in (None, "nested"):
        compare("(b) nested net 4x(32,16)+10, batch 2", nested_layers(), 2, True, args.rounds,
                args.seconds)
    if args.only in (None, "lenet"):
        compare_lenet(64, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
