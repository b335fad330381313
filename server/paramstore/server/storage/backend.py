"""Where storage keeps its bytes: a few verbs over a flat namespace of '/'-separated keys.

The commit protocol (`catalog.py`) needs only these verbs, so a local folder and an object
store serve it alike. Objects are written once and never modified; a commit is `create`, which
makes an object only if its key is free, atomically, so that two writers can never both win.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from paramstore import checkpoint

_KEY = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


class BackendError(OSError):
    """The backend could not do what was asked (an I/O failure): nothing was committed."""


def checked_key(key: str) -> str:
    """`key` if it is a clean relative key ('a/b.c', no '..', no empty segment)."""
    if not _KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Backend(ABC):
    """The verbs a storage backend gives the commit protocol."""

    @abstractmethod
    def write(self, key: str, produce: Callable[[str], None]) -> int:
        """Make object `key` from what `produce(local_path)` writes to a fresh local file, and
        return its size. On return the object is durable. `key` must be new (data objects have
        unique names); an error leaves no object at `key`."""

    def write_checkpoint(self, key: str, planned: checkpoint.Planned) -> None:
        """Make object `key` the safetensors file `planned` lays out, as `write` makes one,
        the fastest way the backend has: by default the library writes a local file."""
        self.write(key, planned.write_file)

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Create object `key` holding `data` if no object has that key: atomic and durable.
        Returns False, changing nothing, when `key` exists. This is the commit step."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """A small object's bytes. Raises `FileNotFoundError`."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of object `key` from byte `start`. Raises `FileNotFoundError`."""

    @abstractmethod
    def local_file(self, key: str) -> AbstractContextManager[str]:
        """A local file holding object `key`, for as long as the context lasts (the object's own
        file where the backend is local). Raises `FileNotFoundError`."""

    def open_checkpoint(
        self,
        key: str,
        checksums: Mapping[str, int] | None = None,
        select: Callable[[str], bool] | None = None,
    ) -> checkpoint.Checkpoint:
        """The safetensors file object `key` holds, checked and verified as
        `checkpoint.open_mapped` checks a file (`checksums`, `select` as there), reading only
        the bytes of the tensors returned: by default mapped from `local_file`. Raises
        `CheckpointError`, `FileNotFoundError`."""
        with self.local_file(key) as path:
            return checkpoint.open_mapped(path, checksums, select)

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under the folder `prefix` ('' for all), sorted."""

    @abstractmethod
    def folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under `prefix`, sorted: those holding anything,
        even only what an interrupted write left."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove object `key`, durably; a missing object is fine."""

    @abstractmethod
    def remove_partial_writes(self, prefix: str) -> None:
        """Remove what writes interrupted by a crash left under the folder `prefix`."""

    @abstractmethod
    def location(self, key: str = "") -> str:
        """Where object `key` (or, by default, the whole store) is, for an operator's log."""
