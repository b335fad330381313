"""Key-value stores for training (Gluon's `kvstore`): workers push gradients, pull weights.

A KVStore holds one array per key. `push` sends gradients (a list is summed); when an optimizer
is set the store applies it to its own copy of the weights (the update runs store-side, as on a
parameter server), otherwise the pushed sum replaces the value. `pull` copies the value out.
`gluon.Trainer(..., kvstore=kv)` drives any object with this interface; `LocalKVStore` is the
in-process one, and the optimizer reaches it as data (`dumps()` JSON), as it would a server.
`priority` arguments are accepted for Gluon code that passes them; updates run in call order.
`set_gradient_compression` quantizes pushed gradients as MXNet does (`paramstore.compression`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from paramstore import compression
from paramstore._tape import Leaf
from paramstore.nd.ndarray import NDArray
from paramstore.optimizer import Key, Optimizer, create_from_json, load_states, save_states

__all__ = ["LOCAL_TYPES", "KVStoreBase", "LocalKVStore", "as_list", "buffer_of", "create",
           "rehome"]


def as_list(value: Any) -> list:
    """A KVStore argument as a list: a list or tuple as it is, anything else alone."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def buffer_of(value: Any) -> np.ndarray:
    """The NumPy memory behind an NDArray (no copy), or `value` as an array."""
    return value._data if isinstance(value, NDArray) else np.asarray(value)


def rehome(array: NDArray, buffer: np.ndarray, owner: NDArray | None = None) -> bool:
    """Make `buffer` (of `array`'s shape and dtype, holding its values) `array`'s memory from
    now on, as a store that keeps weights and gradients where it exchanges them does. With
    `owner`, `array` must be the gradient buffer of `owner`'s tape leaf, which then writes
    gradients into `buffer`; else nothing changes and False is returned."""
    if owner is not None:
        leaf = owner._node
        if not isinstance(leaf, Leaf) or leaf.grad is not array._data:
            return False
        leaf.grad = buffer
    array._data = buffer
    return True


class KVStoreBase:
    """What every KVStore shares: key/value pairing, `pushpull` built on push and pull, and
    the gradient compression setting.

    A store of one's own subclasses this and registers with `@KVStoreBase.register`; then
    `create(name)` and `gluon.Trainer(..., kvstore=name)` build it by its lower-cased class
    name. Gluon's minimal store defines `broadcast`, `pushpull` and `is_capable`.
    """

    kv_registry: dict[str, type[KVStoreBase]] = {}
    OPTIMIZER = "optimizer"
    _compression: compression.Codec | None = None

    @staticmethod
    def register(klass: type[KVStoreBase]) -> type[KVStoreBase]:
        """Class decorator: make `klass` creatable by its lower-cased name (warns on a
        replacement). Raises `TypeError` for a class that is not a `KVStoreBase`."""
        if not (isinstance(klass, type) and issubclass(klass, KVStoreBase)):
            raise TypeError(f"Can only register subclass of KVStoreBase, got {klass!r}")
        name = klass.__name__.lower()
        previous = KVStoreBase.kv_registry.get(name)
        if previous is not None:
            warnings.warn(
                f"WARNING: New kvstore {klass.__module__}.{klass.__name__} is overriding "
                f"existing kvstore {previous.__module__}.{previous.__name__}", stacklevel=2)
        KVStoreBase.kv_registry[name] = klass
        return klass

    def is_capable(self, capability: str) -> bool:
        """Whether the store can do `capability`: 'optimizer' when it has `set_optimizer`."""
        return capability == self.OPTIMIZER and callable(getattr(self, "set_optimizer", None))

    def broadcast(self, key: Key | Sequence[Key], value: Any, out: Any, priority: int = 0) -> None:
        """Initialize each key with `value` and copy the store's value into `out`."""
        self.init(key, value)  # type: ignore[attr-defined]
        self.pull(key, out=out)

    def set_gradient_compression(self, compression_params: Any) -> None:
        """Quantize every gradient pushed from now on, e.g. `{'type': '2bit', 'threshold':
        0.5}`: each element sends -threshold, 0 or +threshold and the rest waits, per key, for
        the next push. Raises `TypeError`/`ValueError` for params `compression.create` refuses.
        """
        self._compression = compression.create(compression_params)

    def push(self, key: Key | Sequence[Key], value: Any, priority: int = 0) -> None:
        raise NotImplementedError

    def pull(self, key: Key | Sequence[Key], out: Any = None, priority: int = 0) -> None:
        raise NotImplementedError

    @staticmethod
    def _keys_and_values(key: Key | Sequence[Key], value: Any) -> list[tuple[Key, Any]]:
        """Pair one key with its value, or a list of keys with a list of as many values."""
        if isinstance(key, (list, tuple)):
            values = as_list(value)
            if len(values) != len(key):
                raise ValueError(f"got {len(key)} keys but {len(values)} values")
            return list(zip(key, values))
        return [(key, value)]

    def pushpull(
        self, key: Key | Sequence[Key], value: Any, out: Any = None, priority: int = 0
    ) -> None:
        """`push` then `pull`; without `out` the pushed arrays receive the new value."""
        self.push(key, value)
        self.pull(key, out=value if out is None else out)


class LocalKVStore(KVStoreBase):
    """A KVStore in this process: one worker (rank 0 of 1), store-side optimizer updates."""

    type = "local"
    rank = 0
    num_workers = 1
    takes_key_lists = True  # push, pull, pushpull and broadcast take lists of keys

    def __init__(self) -> None:
        self._values: dict[Key, np.ndarray] = {}
        self._optimizer: Optimizer | None = None

    def _stored(self, key: Key) -> np.ndarray:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"key {key!r} has not been initialized in the KVStore") from None

    def init(self, key: Key | Sequence[Key], value: Any) -> None:
        """Give each new key its initial value (copied); a key that exists keeps its value."""
        for one_key, one_value in self._keys_and_values(key, value):
            if one_key not in self._values:
                self._values[one_key] = np.array(buffer_of(one_value), copy=True)

    def push(self, key: Key | Sequence[Key], value: Any, priority: int = 0) -> None:
        """Send gradients: a list of arrays for one key is summed, then applied.

        With an optimizer set the store updates its weight; without one the sum becomes the
        value. Raises `KeyError` for a key never initialized, `ValueError` for a wrong shape.
        """
        for one_key, one_value in self._keys_and_values(key, value):
            stored = self._stored(one_key)
            parts = [buffer_of(part) for part in as_list(one_value)]
            for part in parts:
                if part.shape != stored.shape:
                    raise ValueError(
                        f"pushed shape {part.shape} for key {one_key!r} of shape {stored.shape}"
                    )
            if self._compression is not None:
                # As on several devices: each part is quantized alone, with its own residual.
                codec = self._compression
                parts = [codec.decompress(codec.compress((one_key, i), part), part.shape,
                                          stored.dtype) for i, part in enumerate(parts)]
            merged = parts[0] if len(parts) == 1 else np.sum(parts, axis=0, dtype=stored.dtype)
            if self._optimizer is not None:
                self._optimizer.update(one_key, stored, merged)
            else:
                np.copyto(stored, merged, casting="unsafe")

    def pull(self, key: Key | Sequence[Key], out: Any = None, priority: int = 0) -> None:
        """Copy each key's value into `out` (an NDArray, or a list of them to fill alike)."""
        if out is None:
            raise ValueError("pull needs out=: the arrays to copy the values into")
        for one_key, one_out in self._keys_and_values(key, out):
            stored = self._stored(one_key)
            for target in as_list(one_out):
                np.copyto(buffer_of(target), stored, casting="unsafe")

    def set_optimizer(self, optimizer: Optimizer) -> None:
        """Update store-side with a copy of `optimizer`, rebuilt from its `dumps()` JSON.

        Sending an optimizer of the same kind again (a new learning rate, say) keeps the
        per-key state (momentum, moments, counts).
        """
        rebuilt = create_from_json(optimizer.dumps())
        if self._optimizer is not None and type(self._optimizer) is type(rebuilt):
            rebuilt.set_states(self._optimizer.get_states())
        self._optimizer = rebuilt

    def save_optimizer_states(self, fname: str, dump_optimizer: bool = False) -> None:
        """Write the store-side optimizer and its state to `fname` (see `optimizer.save_states`)."""
        save_states(fname, self._require_optimizer())

    def load_optimizer_states(self, fname: str) -> None:
        """Replace the store-side optimizer and its state with those saved in `fname`."""
        self._optimizer = load_states(fname)

    def _require_optimizer(self) -> Optimizer:
        if self._optimizer is None:
            raise RuntimeError("this KVStore has no optimizer: call set_optimizer first")
        return self._optimizer


# Gluon's single-machine types; on a CPU they are one in-process store.
LOCAL_TYPES = ("local", "device", "local_allreduce_cpu", "local_allreduce_device")


def create(name: str = "local") -> KVStoreBase:
    """A KVStore by type: a registered store's lower-cased class name, or one of
    `LOCAL_TYPES` (the same in-process store on a CPU).

    Raises `TypeError` for a name that is not a string, `ValueError` for other types;
    distributed stores come from `paramstore.client`.
    """
    if not isinstance(name, str):
        raise TypeError("name must be a string")
    name = name.lower()
    registered = KVStoreBase.kv_registry.get(name)
    if registered is not None:
        return registered()
    if name not in LOCAL_TYPES:
        raise ValueError(
            f"Unknown KVStore type {name!r}: {', '.join(LOCAL_TYPES)} are built in, and "
            "stores registered with KVStoreBase.register; connect to a paramstore server for "
            "a distributed one"
        )
    store = LocalKVStore()
    store.type = name
    return store
