"""The server's domain: named stores, their snapshots, and recovery at start. No gRPC here.

Lock order, when more than one is held: the registry's lock, then a store's lock, then that
store's snapshot lock. No lock is held while a client's stream is read or written: requests
are received whole before a call here, and replies are sent from immutable states after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from paramstore import checkpoint
from paramstore.server import validation
from paramstore.server.errors import AlreadyExists, InvalidArgument, StoreNotFound
from paramstore.server.initialization import initialize
from paramstore.server.snapshots import (
    NO_STEP,
    SnapshotInfo,
    SnapshotStorage,
    decode,
    snapshot_step,
    user_metadata,
)
from paramstore.server.stores import Store, StoreState

DEFAULT_MAX_TENSOR_BYTES = 16 << 30


class StoreRegistry:
    """Every store of one server, backed by snapshots under `data_dir` (`keep`: newest kept
    per store, 0 for all). Stores found on disk are recovered when the registry is made."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        keep: int = 0,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    ) -> None:
        if keep < 0:
            raise ValueError(f"keep must be 0 (keep all) or positive, got {keep}")
        self.storage = SnapshotStorage(data_dir, keep)
        self.max_tensor_bytes = max_tensor_bytes
        self._lock = threading.Lock()
        self._stores = {
            name: Store(name, state) for name, state in self.storage.recover().items()
        }

    # ---- stores ------------------------------------------------------------------------------

    def create(self, name: str) -> Store:
        """A new empty store. Raises `InvalidArgument` (name), `AlreadyExists`."""
        validation.store_name(name)
        with self._lock:
            if name in self._stores:
                raise AlreadyExists(f"store {name!r} already exists")
            self.storage.create_folder(name)
            store = self._stores[name] = Store(name)
        return store

    def get(self, name: str) -> Store:
        """The store `name`. Raises `InvalidArgument` (name), `StoreNotFound`."""
        validation.store_name(name)
        try:
            return self._stores[name]
        except KeyError:
            raise StoreNotFound(
                f"no store named {name!r}; create it first (existing: "
                f"{', '.join(sorted(self._stores)[:10]) or 'none'})"
            ) from None

    def list(self) -> list[Store]:
        """Every store, sorted by name."""
        with self._lock:
            return [self._stores[name] for name in sorted(self._stores)]

    def delete(self, name: str) -> None:
        """Delete a store and its snapshots. Raises `StoreNotFound`."""
        self.get(name)
        with self._lock:
            if self._stores.pop(name, None) is None:
                raise StoreNotFound(f"no store named {name!r}")
            self.storage.delete_folder(name)

    # ---- parameters --------------------------------------------------------------------------

    def initialize(
        self, name: str, initializer: str, select: str, *, force_reinit: bool
    ) -> tuple[list[str], StoreState]:
        """Run an initializer on the store's selected parameters (see `initialization`)."""
        matches: Callable[[str], bool] = validation.select(select)
        return initialize(self.get(name), initializer, matches, force_reinit=force_reinit)

    # ---- snapshots ---------------------------------------------------------------------------

    def snapshot(
        self, name: str, *, step: int = NO_STEP, metadata: Mapping[str, str] | None = None
    ) -> SnapshotInfo:
        """Write the store's current state to a new snapshot. Raises `InvalidArgument` for a
        step outside [0, 2**63) or reserved metadata (nothing is written then)."""
        step = validation.snapshot_step(step, NO_STEP)
        checked = validation.metadata(dict(metadata or {}))
        store = self.get(name)
        return self.storage.take(name, store.state(), step=step, metadata=checked)

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """The store's snapshots, oldest first."""
        self.get(name)
        return self.storage.list(name)

    def restore(self, name: str, snapshot_id: str) -> StoreState:
        """Replace the store's contents with a snapshot's. Raises `SnapshotNotFound`,
        `InvalidArgument` (damaged file); the store is unchanged then."""
        store = self.get(name)
        return store.replace(self.storage.read(name, snapshot_id))

    def delete_snapshot(self, name: str, snapshot_id: str) -> None:
        self.get(name)
        self.storage.delete(name, snapshot_id)

    def snapshot_file(self, name: str, snapshot_id: str) -> tuple[SnapshotInfo, Path]:
        """A snapshot's description and file, for export."""
        self.get(name)
        return self.storage.info(name, snapshot_id), self.storage.path(name, snapshot_id)

    def import_snapshot(self, name: str, data: bytes | bytearray | memoryview) -> SnapshotInfo:
        """Create store `name` from safetensors bytes, validated before anything changes; the
        file becomes the store's first snapshot. Raises `InvalidArgument`, `AlreadyExists`."""
        validation.store_name(name)
        if name in self._stores:
            raise AlreadyExists(f"store {name!r} already exists; import under a new name")
        try:
            loaded = checkpoint.loads(data)
        except checkpoint.CheckpointError as error:
            raise InvalidArgument(f"not a valid safetensors file: {error}") from None
        state = decode(loaded, self.max_tensor_bytes)
        step = snapshot_step(loaded.metadata)
        metadata = user_metadata(loaded.metadata)
        with self._lock:
            if name in self._stores:
                raise AlreadyExists(f"store {name!r} already exists; import under a new name")
            info = self.storage.take(name, state, step=step, metadata=metadata)
            self._stores[name] = Store(name, state)
        return info
