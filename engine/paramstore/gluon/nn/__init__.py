"""`paramstore.gluon.nn`: layers and containers (Gluon's `gluon.nn`)."""

from paramstore.gluon.block import Block, HybridBlock
from paramstore.gluon.nn.activations import ELU, GELU, SELU, PReLU, Swish
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
from paramstore.gluon.nn.conv_layers import (
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalAvgPool3D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPool3D,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
    ReflectionPad2D,
)
from paramstore.gluon.nn.lambdas import HybridLambda, Lambda
from paramstore.gluon.nn.normalization import BatchNorm, GroupNorm, InstanceNorm, LayerNorm

__all__ = [
    "Activation", "BatchNorm", "Block", "Dense", "Dropout", "Embedding", "Flatten",
    "HybridBlock", "HybridSequential", "LayerNorm", "LeakyReLU", "Sequential",
    # convolution and pooling
    "AvgPool1D", "AvgPool2D", "AvgPool3D", "Conv1D", "Conv1DTranspose", "Conv2D",
    "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "GlobalAvgPool1D", "GlobalAvgPool2D",
    "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "MaxPool1D",
    "MaxPool2D", "MaxPool3D", "ReflectionPad2D",
    # activations, normalizations, lambdas
    "ELU", "GELU", "GroupNorm", "HybridLambda", "InstanceNorm", "Lambda", "PReLU", "SELU",
    "Swish",
]
