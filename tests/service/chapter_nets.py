"""The networks of the parameter-management chapter, built as its readers build them.

Each is built with fresh name counters, as in a new script: the MLP is always `dense0`,
`dense1` inside `sequential0`, whatever the test built before.
"""

from __future__ import annotations

from paramstore import nd
from paramstore.gluon import nn
from paramstore.name import NameManager


def mlp() -> nn.Sequential:
    """The chapter's multilayer perceptron: Dense(256, relu), Dense(10), initialized."""
    with NameManager():
        net = nn.Sequential()
        net.add(nn.Dense(256, activation="relu"))
        net.add(nn.Dense(10))
    net.initialize()
    net(nd.random.uniform(shape=(2, 20)))
    return net


def rgnet() -> nn.Sequential:
    """The chapter's nested "Rube Goldberg" net: four blocks of two Dense layers, then Dense(10)."""

    def block1() -> nn.Sequential:
        net = nn.Sequential()
        net.add(nn.Dense(32, activation="relu"))
        net.add(nn.Dense(16, activation="relu"))
        return net

    def block2() -> nn.Sequential:
        net = nn.Sequential()
        for _ in range(4):
            net.add(block1())
        return net

    with NameManager():
        net = nn.Sequential()
        net.add(block2())
        net.add(nn.Dense(10))
    net.initialize()
    net(nd.random.uniform(shape=(2, 20)))
    return net


def tied_net() -> nn.Sequential:
    """The chapter's net whose second and third layers share one Dense's parameters."""
    with NameManager():
        net = nn.Sequential()
        shared = nn.Dense(8, activation="relu")
        net.add(nn.Dense(8, activation="relu"),
                shared,
                nn.Dense(8, activation="relu", params=shared.params),
                nn.Dense(10))
    net.initialize()
    net(nd.random.uniform(shape=(2, 20)))
    return net


def by_path(net: nn.Sequential) -> dict:
    """The net's weights and biases under structural paths (`1.weight`), as
    `save_parameters` names them: a shared Parameter appears under each of its paths, which a
    push sends as one tensor and a tie."""
    return {f"{index}.{kind}": getattr(layer, kind)
            for index, layer in enumerate(net) for kind in ("weight", "bias")}


CHAPTER_NETS = {"mlp": mlp, "rgnet": rgnet, "tied": tied_net}
