"""`RemoteParameterDict` and `RemoteParameter`: a store's listing, printed like Gluon's.

A listing is taken once (`RemoteStore.collect_params`); `data()` and `set_data()` go to the
server each time they are called.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from paramstore.dtypes import numpy_dtype
from paramstore.proto.v1 import paramstore_pb2 as pb

if TYPE_CHECKING:
    from paramstore.client.store import RemoteStore
    from paramstore.nd.ndarray import NDArray

_NUMPY_CLASS_LABEL = "<class 'numpy."


class RemoteParameter:
    """One parameter of a store: `name`, `shape`, `dtype`, `data()`, `set_data()`."""

    def __init__(self, store: RemoteStore, spec: pb.ParameterSpec) -> None:
        self.store = store
        self.name: str = spec.name
        self.shape: tuple[int, ...] | None = None if spec.shape_unknown else tuple(spec.shape)
        self.dtype_label: str = spec.dtype_label or spec.dtype
        self.kind: str = spec.kind or "Parameter"
        self.alias_of: str | None = spec.alias_of or None
        self._dtype_name = spec.dtype

    @property
    def dtype(self) -> Any:
        """The dtype as the pushing dict held it: a NumPy class (`numpy.float32`) when it was
        given as one, else its name (`'float32'`)."""
        if self.dtype_label.startswith(_NUMPY_CLASS_LABEL):
            return numpy_dtype(self._dtype_name).type
        return self._dtype_name

    def data(self) -> NDArray:
        """The parameter's current value on the server, as an NDArray.

        Raises `ParameterNotFound` (deleted meanwhile), `FailedPrecondition` (no data yet)."""
        from paramstore.nd.ndarray import NDArray

        return NDArray._wrap(self.store.pull_one(self.name))

    def set_data(self, data: Any) -> None:
        """Overwrite the parameter's value on the server (an NDArray or array of its shape).

        Raises `FailedPrecondition` for a shape or dtype that differs."""
        self.store.set_data(self.name, data)

    def __repr__(self) -> str:
        return f"{self.kind} {self.name} (shape={self.shape}, dtype={self.dtype_label})"


class RemoteParameterDict:
    """A store's parameters in store order; `str()` is the local `ParameterDict`'s."""

    def __init__(self, prefix: str, parameters: list[RemoteParameter]) -> None:
        self._prefix = prefix
        self._parameters = OrderedDict((parameter.name, parameter) for parameter in parameters)

    @property
    def prefix(self) -> str:
        return self._prefix

    def __getitem__(self, name: str) -> RemoteParameter:
        return self._parameters[name]

    def __contains__(self, name: object) -> bool:
        return name in self._parameters

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __len__(self) -> int:
        return len(self._parameters)

    def keys(self) -> Any:
        return self._parameters.keys()

    def values(self) -> Any:
        return self._parameters.values()

    def items(self) -> Any:
        return self._parameters.items()

    def __repr__(self) -> str:
        header = f"{self._prefix} (" if self._prefix else "("
        lines = "\n".join(f"  {parameter!r}" for parameter in self._parameters.values())
        return f"{header}\n{lines}\n)"
