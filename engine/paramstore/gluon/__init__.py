"""`paramstore.gluon`: Gluon 1.x's imperative API — Parameters, Blocks, layers, Trainer, losses.

    from paramstore import gluon, init, nd
    from paramstore.gluon import nn
    net = nn.Sequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(10))
    net.initialize()
    print(net.collect_params())
"""

from paramstore.gluon import loss, nn, utils
from paramstore.gluon.block import Block, HybridBlock
from paramstore.gluon.parameter import (
    Constant,
    DeferredInitializationError,
    Parameter,
    ParameterDict,
)
from paramstore.gluon.trainer import Trainer

__all__ = [
    "Block", "Constant", "DeferredInitializationError", "HybridBlock", "Parameter",
    "ParameterDict", "Trainer", "loss", "nn", "utils",
]
