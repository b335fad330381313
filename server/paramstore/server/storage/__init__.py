"""Storage: the one layer that owns every byte the server persists (see `catalog`)."""

from paramstore.server.storage.backend import Backend, BackendError
from paramstore.server.storage.catalog import (
    Catalog,
    Contents,
    PendingSnapshot,
    SnapshotInfo,
    inspect_file,
)
from paramstore.server.storage.local import LocalBackend
from paramstore.server.storage.steps import COMMIT_STEPS

__all__ = [
    "COMMIT_STEPS", "Backend", "BackendError", "Catalog", "Contents", "LocalBackend",
    "PendingSnapshot", "SnapshotInfo", "inspect_file",
]
