"""Training-step throughput of the engine as a ratio to hand-written NumPy, measured in one run.

Two workloads: (a) a 784-1024-1024-10 MLP on a batch of 256 (dominated by matrix products: the
ratio shows what the engine adds to the arithmetic) and (b) the chapter's nested net,
4 x (Dense 32, Dense 16) then Dense 10, on a (2, 20) batch (tiny arrays: the ratio shows per-op
overhead). Each step is forward, softmax cross-entropy, backward and an SGD update. Runs of the
two sides alternate so that a noisy neighbour slows both; the best of the rounds is reported.
PyTorch eager is measured beside them when it is installed.

    python bench/engine.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from paramstore import autograd, gluon, nd
from paramstore.gluon import nn

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
    net.initialize()
    rng = np.random.default_rng(0)
    x = nd.array(rng.uniform(size=(batch, layers[0][0])))
    labels = nd.array(rng.integers(0, 10, batch))
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LEARNING_RATE})

    def step() -> None:
        with autograd.record():
            value = loss(net(x), labels)
        value.backward()
        trainer.step(batch)

    return step


def torch_step(layers: list[tuple[int, int, bool]], batch: int) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    modules: list = []
    for i, o, relu in layers:
        modules.append(torch.nn.Linear(i, o))
        if relu:
            modules.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*modules)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    x = torch.rand(batch, layers[0][0])
    labels = torch.randint(0, 10, (batch,))
    loss = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad()
        loss(net(x), labels).backward()
        optimizer.step()

    return step


def steps_per_second(step: Callable[[], None], seconds: float) -> float:
    step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        count += 1
    return count / elapsed


def compare(name: str, layers: list, batch: int, nested: bool, rounds: int, seconds: float) -> None:
    sides = {"numpy": numpy_step(layers, batch), "paramstore": engine_step(layers, batch, nested)}
    torch = torch_step(layers, batch)
    if torch is not None:
        sides["pytorch"] = torch
    best = {side: 0.0 for side in sides}
    for _ in range(rounds):
        for side, step in sides.items():
            best[side] = max(best[side], steps_per_second(step, seconds))
    print(f"{name}: hand-written NumPy {best['numpy']:.1f} steps/s")
    for side in sides:
        if side != "numpy":
            ratio = best[side] / best["numpy"]
            print(f"  {side:<11} {best[side]:9.1f} steps/s  ratio to NumPy {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per side per round")
    args = parser.parse_args()
    compare("(a) MLP 784-1024-1024-10, batch 256", mlp_layers(), 256, False, args.rounds,
            args.seconds)
    compare("(b) nested net 4x(32,16)+10, batch 2", nested_layers(), 2, True, args.rounds,
            args.seconds)


if __name__ == "__main__":
    main()
