"""`nd.save` and `nd.load`: arrays in a safetensors file, as a dict of names or a list.

The file is a plain safetensors file written by `paramstore.checkpoint` (atomically, ties
stored once). A list is stored under the names "0", "1", ... and marked in `__metadata__`, so
`load` gives back the list; any other file (a `save_parameters` checkpoint, a snapshot) loads
as a dict of its names, every alias of a tied tensor included.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from paramstore import checkpoint
from paramstore.nd.ndarray import NDArray

__all__ = ["load", "reset_arrays", "save"]

_LAYOUT_KEY = "paramstore.nd.layout"  # "list" for a saved list; absent for a dict


def save(fname: str | os.PathLike[str], data: Any) -> None:
    """Write an NDArray, a list of NDArrays or a dict of str -> NDArray to `fname`.

    Raises `TypeError` for a list or dict holding anything else and `ValueError` for other
    data, as Gluon does; nothing is written then.
    """
    if isinstance(data, NDArray):
        data = [data]
    if isinstance(data, dict):
        if not all(isinstance(k, str) and isinstance(v, NDArray) for k, v in data.items()):
            raise TypeError("save only accept dict str->NDArray or list of NDArray")
        tensors, metadata = {key: value._data for key, value in data.items()}, {}
    elif isinstance(data, (list, tuple)):
        if not all(isinstance(value, NDArray) for value in data):
            raise TypeError("save only accept dict str->NDArray or list of NDArray")
        tensors = {str(i): value._data for i, value in enumerate(data)}
        metadata = {_LAYOUT_KEY: "list"}
    else:
        raise ValueError("data needs to either be a NDArray, dict of str, NDArray pairs or a "
                         "list of NDarrays.")
    checkpoint.save(fname, tensors, metadata=metadata)


def load(fname: str | os.PathLike[str]) -> list[NDArray] | dict[str, NDArray]:
    """The arrays of a file written by `save` (a list or a dict, as saved), or of any
    safetensors file (a dict). An empty file loads as an empty list, as in Gluon.

    Raises `CheckpointError` (a `ValueError`) for a file that is not safetensors, `OSError`
    when it cannot be read.
    """
    saved = checkpoint.load(fname)
    if saved.metadata.get(_LAYOUT_KEY) == "list":
        return [NDArray._wrap(saved.tensors[str(i)]) for i in range(len(saved.tensors))]
    if not saved.tensors:
        return []
    return {name: NDArray._wrap(array) for name, array in saved.tensors.items()}


def reset_arrays(*data: NDArray, num_arrays: int | None = None) -> None:
    """Set every given array to zero, in place."""
    for array in data:
        array._data[...] = np.zeros((), array._data.dtype)
