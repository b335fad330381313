"""paramstore: neural-network parameters, from a Gluon 1.x engine to a checkpoint service.

`from paramstore import nd, autograd, init, gluon` gives the embedded NumPy engine;
`paramstore.server` and `paramstore.client` give the gRPC service and its SDK.
"""

import importlib
from typing import Any

from paramstore.base import EngineError
from paramstore.context import Context, cpu, current_context, gpu

__version__ = "0.1.0"
__all__ = ["Context", "EngineError", "cpu", "current_context", "gpu"]

# Submodules load on first use, so `import paramstore as ps; ps.gluon.nn.Dense` works while
# `from paramstore.client import connect` does not pay for the engine's imports.
_SUBMODULES = {
    "nd", "autograd", "init", "initializer", "gluon", "random", "optimizer", "checkpoint",
    "kvstore", "name",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"paramstore.{name}")
    raise AttributeError(f"module 'paramstore' has no attribute {name!r}")
