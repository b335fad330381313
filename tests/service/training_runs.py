"""A few training steps of the chapter's tied-layer MLP through a KVStore, for the tests that
compare one data path with another."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from paramstore import autograd, gluon, nd
from paramstore import random as ps_random
from paramstore.client.train_demo import TRANSPORTS, global_batch, tied_mlp

__all__ = ["TRANSPORTS", "long_test_transports", "takes_the_data_channel", "train_in_one_process",
           "train_tied_mlp"]


def long_test_transports() -> list[Any]:
    """TRANSPORTS for a test of many seconds: "data-channel" (how workers on other hosts than
    the server's step, as a cluster's do) in `make test`; the others, whose steps across moves
    and restarts have quicker tests of their own, in `make soak` only."""
    return [name if name == "data-channel" else pytest.param(name, marks=pytest.mark.slow)
            for name in TRANSPORTS]


def takes_the_data_channel(transport: str) -> bool:
    """Whether a worker of `transport` (a key of TRANSPORTS) steps on the server's data
    channel, when the server has one."""
    return TRANSPORTS[transport].get("data_channel", True)


def train_tied_mlp(kv: Any, compression: dict[str, Any] | None = None,
                   steps: int = 4) -> list[np.ndarray]:
    """Train `steps` steps of batch 8 through `kv` (SGD with momentum); the final weights."""
    ps_random.seed(0)
    net = tied_mlp()
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9},
                            kvstore=kv, compression_params=compression)
    for step in range(steps):
        features, labels = global_batch(step, 8)
        with autograd.record():
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(nd.array(features)),
                                                         nd.array(labels))
        loss.backward()
        trainer.step(8)
    return [param.data().asnumpy() for param in net.collect_params().values()]


def train_in_one_process(steps: int, batch_size: int, optimizer: str,
                         optimizer_params: dict[str, Any]) -> list[np.ndarray]:
    """The reference: the same net, data and optimizer, no server, the union batch."""
    ps_random.seed(0)
    net = tied_mlp()
    net.initialize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), optimizer, optimizer_params)
    for step in range(steps):
        features, labels = global_batch(step, batch_size)
        with autograd.record():
            loss = loss_fn(net(nd.array(features)), nd.array(labels))
        loss.backward()
        trainer.step(batch_size)
    return [param.data().asnumpy() for param in net.collect_params().values()]
