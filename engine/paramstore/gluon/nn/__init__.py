"""`paramstore.gluon.nn`: layers and containers (Gluon's `gluon.nn`)."""

from paramstore.gluon.block import Block, HybridBlock
from paramstore.gluon.nn.basic_layers import (
    Activation,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    HybridSequential,
    LeakyReLU,
    Sequential,
)
from paramstore.gluon.nn.normalization import BatchNorm, LayerNorm

__all__ = [
    "Activation", "BatchNorm", "Block", "Dense", "Dropout", "Embedding", "Flatten",
    "HybridBlock", "HybridSequential", "LayerNorm", "LeakyReLU", "Sequential",
]
