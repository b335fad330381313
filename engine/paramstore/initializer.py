"""`paramstore.initializer`: the same initializers as `paramstore.init` (Gluon has both names)."""

from paramstore.init import (
    Bilinear,
    Constant,
    FusedRNN,
    InitDesc,
    Initializer,
    Load,
    LSTMBias,
    Mixed,
    MSRAPrelu,
    Normal,
    One,
    Orthogonal,
    Uniform,
    Xavier,
    Zero,
    alias,
    create,
    register,
    registered_names,
)

__all__ = [
    "Bilinear", "Constant", "FusedRNN", "InitDesc", "Initializer", "LSTMBias", "Load",
    "MSRAPrelu", "Mixed", "Normal", "One", "Orthogonal", "Uniform", "Xavier", "Zero",
    "alias", "create", "register", "registered_names",
]
