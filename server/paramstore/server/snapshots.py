"""Snapshots on disk: one safetensors file per snapshot, `<data-dir>/<store>/<id>.safetensors`.

Ids are zero-padded sequence numbers, so later snapshots sort after earlier ones. A file is
written by `paramstore.checkpoint.save` (temporary name, fsync, rename, folder fsync), so a
crash leaves whole files only; leftover temporaries are hidden names, never listed, and removed
by `recover()`. Besides the codec's own keys, `__metadata__` holds under `paramstore.*` the
store's name, prefix, version, the step and time, and every parameter's listing (dtype label,
kind, ties, and the shape of parameters that hold no data). Other keys are the caller's.

A damaged file (truncated, or whose data fails the checksum in its metadata) is never served:
`recover()` checks every file's structure and loads the newest sound snapshot in full, falling
back to the previous one; a file found damaged then, or by a later `read()`, is logged at
WARNING with its path, left on disk for inspection, and omitted from listings from then on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from paramstore import checkpoint
from paramstore.server import validation
from paramstore.server.errors import InvalidArgument, SnapshotNotFound
from paramstore.server.stores import ParameterInfo, StoreState, validated_info

_log = logging.getLogger(__name__)

_SNAPSHOT_FILE = re.compile(r"(\d{8,})\.safetensors")
STORE_KEY = "paramstore.store"
PREFIX_KEY = "paramstore.prefix"
STEP_KEY = "paramstore.step"
CREATED_KEY = "paramstore.created"
VERSION_KEY = "paramstore.version"
PARAMETERS_KEY = "paramstore.parameters"
NO_STEP = -1


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot holds, without its tensors."""

    store: str
    id: str
    step: int
    created_unix_nanos: int
    metadata: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    version: int = 0


class SnapshotStorage:
    """The snapshots of every store under one folder, with `keep` newest kept (0: all).

    Lock order: a store's snapshot lock is taken after that store's own lock when both are
    needed, never the other way round; no snapshot lock is held while a client streams.
    """

    def __init__(self, root: str | os.PathLike[str], keep: int = 0) -> None:
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._damaged: set[tuple[str, str]] = set()  # (store, id) found unreadable

    # ---- stores' folders ---------------------------------------------------------------------

    def create_folder(self, store: str) -> None:
        """Make the store's folder, so that an empty store survives a restart."""
        (self.root / store).mkdir(exist_ok=True)
        _fsync_folder(self.root)

    def delete_folder(self, store: str) -> None:
        """Delete the store's folder and every snapshot in it."""
        with self._lock(store):
            shutil.rmtree(self.root / store, ignore_errors=True)
            _fsync_folder(self.root)
            # A store made again under this name numbers its snapshots from 1 afresh.
            self._damaged.difference_update(
                [entry for entry in self._damaged if entry[0] == store])

    # ---- snapshots ---------------------------------------------------------------------------

    def take(
        self,
        store: str,
        state: StoreState,
        *,
        step: int = NO_STEP,
        metadata: Mapping[str, str] | None = None,
    ) -> SnapshotInfo:
        """Write `state` as the store's newest snapshot, then apply retention."""
        tensors, aliases, file_metadata = encode(store, state, step, metadata or {})
        with self._lock(store):
            folder = self.root / store
            folder.mkdir(exist_ok=True)
            ids = self._ids(store)
            snapshot_id = f"{int(ids[-1]) + 1 if ids else 1:08d}"
            checkpoint.save(_file(folder, snapshot_id), tensors, aliases=aliases,
                            metadata=file_metadata)
            for old in ids[: max(0, len(ids) + 1 - self.keep)] if self.keep else []:
                _remove(folder, old)
            if self.keep:
                _fsync_folder(folder)
        return self.info(store, snapshot_id)

    def list(self, store: str) -> list[SnapshotInfo]:
        """The store's snapshots, oldest first (unreadable files are skipped)."""
        infos = []
        for snapshot_id in self._ids(store):
            try:
                infos.append(self.info(store, snapshot_id))
            except (SnapshotNotFound, InvalidArgument):
                continue  # deleted meanwhile, or damaged: a listing shows what can be restored
        return infos

    def info(self, store: str, snapshot_id: str) -> SnapshotInfo:
        """Describe one snapshot from its header. Raises `SnapshotNotFound`, `InvalidArgument`."""
        path = self.path(store, snapshot_id)
        if (store, snapshot_id) in self._damaged:
            raise _damaged(snapshot_id, "it failed its checks when it was read")
        try:
            metadata = checkpoint.read_metadata(path)
            size = path.stat().st_size
        except FileNotFoundError:
            raise _not_found(store, snapshot_id) from None
        except checkpoint.CheckpointError as error:
            raise _damaged(snapshot_id, error) from None
        return _info(store, snapshot_id, metadata, size, created=path.stat().st_mtime_ns)

    def read(self, store: str, snapshot_id: str) -> StoreState:
        """The store state a snapshot holds. Raises `SnapshotNotFound`, `InvalidArgument`."""
        try:
            loaded = checkpoint.load(self.path(store, snapshot_id))
        except FileNotFoundError:
            raise _not_found(store, snapshot_id) from None
        except checkpoint.CheckpointError as error:
            self._mark_damaged(store, snapshot_id, error)
            raise _damaged(snapshot_id, error) from None
        return decode(loaded)

    def path(self, store: str, snapshot_id: str) -> Path:
        """The file of a snapshot (it may not exist). Raises `InvalidArgument` for a bad id."""
        return _file(self.root / store, validation.snapshot_id(snapshot_id))

    def delete(self, store: str, snapshot_id: str) -> None:
        """Delete one snapshot. Raises `SnapshotNotFound`."""
        path = self.path(store, snapshot_id)
        with self._lock(store):
            if not path.exists():
                raise _not_found(store, snapshot_id)
            _remove(path.parent, snapshot_id)
            _fsync_folder(path.parent)
            self._damaged.discard((store, snapshot_id))

    def recover(self) -> dict[str, StoreState]:
        """Every store found on disk with the state of its newest readable snapshot (an empty
        state when it has none). Leftover temporary files are removed; damaged snapshots are
        logged and skipped."""
        stores = {}
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                validation.store_name(folder.name)
            except InvalidArgument:
                _log.warning("ignoring %s: not a store name", folder)
                continue
            for leftover in folder.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)
            self._check_structure(folder.name)
            stores[folder.name] = self._newest_state(folder.name)
        return stores

    def _check_structure(self, store: str) -> None:
        """Mark damaged every snapshot whose header or size is wrong (a truncated file), reading
        headers only: the data's checksum is verified when a snapshot is read."""
        for snapshot_id in self._ids(store):
            try:
                with safe_open(self.path(store, snapshot_id), framework="numpy"):
                    pass
            except SafetensorError as error:
                self._mark_damaged(store, snapshot_id, error)

    def _newest_state(self, store: str) -> StoreState:
        for snapshot_id in reversed(self._ids(store)):
            if (store, snapshot_id) in self._damaged:
                continue
            try:
                state = self.read(store, snapshot_id)
            except InvalidArgument:
                continue  # damaged (logged by read) or not a store's state
            _log.info("store %s: recovered from snapshot %s", store, snapshot_id)
            return state
        return StoreState()

    def _ids(self, store: str) -> list[str]:
        try:
            names = os.listdir(self.root / store)
        except FileNotFoundError:
            return []
        matches = (_SNAPSHOT_FILE.fullmatch(name) for name in names)
        return sorted((match.group(1) for match in matches if match), key=int)

    def _mark_damaged(self, store: str, snapshot_id: str, error: object) -> None:
        _log.warning("store %s: snapshot file %s is damaged, skipped and never served: %s",
                     store, self.path(store, snapshot_id), error)
        self._damaged.add((store, snapshot_id))

    def _lock(self, store: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(store, threading.Lock())


# ---- a store state <-> a checkpoint ------------------------------------------------------------


def encode(
    store: str, state: StoreState, step: int, metadata: Mapping[str, str]
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """The codec's arguments (tensors, aliases, metadata) that describe `state`."""
    # Views: two names that share an array (after an untie) must not look like a tie to the
    # codec, which takes one object under two names for one.
    tensors = {name: array.view() for name, array in state.data.items()}
    ties = state.ties()
    aliases = {alias: target for alias, target in ties.items() if target in tensors}
    listing = [_listing_entry(info, has_data=info.name in tensors)
               for info in state.parameters.values()]
    file_metadata = {
        **metadata,
        STORE_KEY: store,
        PREFIX_KEY: state.prefix,
        STEP_KEY: str(step),
        CREATED_KEY: str(time.time_ns()),
        VERSION_KEY: str(state.version),
        PARAMETERS_KEY: json.dumps(listing, separators=(",", ":")),
    }
    return tensors, aliases, file_metadata


def _listing_entry(info: ParameterInfo, *, has_data: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": info.name, "label": info.dtype_label, "kind": info.kind}
    if info.alias_of:
        entry["alias_of"] = info.alias_of
    elif not has_data:
        entry["shape"] = None if info.shape is None else list(info.shape)
        entry["dtype"] = info.dtype
    return entry


def decode(loaded: checkpoint.Checkpoint, max_bytes: int = 1 << 62) -> StoreState:
    """The store state a checkpoint describes; a file from elsewhere (no paramstore listing)
    gives its tensors in file order with plain dtype labels. Raises `InvalidArgument`."""
    stored = loaded.stored()
    raw = loaded.metadata.get(PARAMETERS_KEY)
    listing = _parsed_listing(raw) if raw is not None else [
        {"name": name, "alias_of": loaded.aliases.get(name)} for name in loaded.tensors
    ]
    parameters: dict[str, ParameterInfo] = {}
    for entry in listing:
        name = entry["name"]
        if name in parameters:
            raise InvalidArgument(f"the file lists parameter {name!r} twice")
        array = stored.get(name)
        if array is not None:
            shape, dtype = array.shape, array.dtype.name
        elif entry.get("alias_of"):
            shape, dtype = None, "float32"  # replaced by the target's below
        else:
            shape, dtype = entry.get("shape"), entry.get("dtype", "")
        parameters[name] = validated_info(
            name, shape, dtype, entry.get("label", dtype), entry.get("kind", "Parameter"),
            entry.get("alias_of"), max_bytes,
        )
    if set(stored) - set(parameters):
        raise InvalidArgument(
            f"the file's listing misses tensors {sorted(set(stored) - set(parameters))[:5]}"
        )
    for name, info in parameters.items():
        if info.alias_of:
            target = parameters.get(info.alias_of)
            if target is None or target.alias_of:
                raise InvalidArgument(f"alias {name!r} names {info.alias_of!r}, not a parameter")
            parameters[name] = ParameterInfo(
                name, target.shape, target.dtype, target.dtype_label, target.kind, info.alias_of
            )
    for array in stored.values():
        array.flags.writeable = False
    prefix = loaded.metadata.get(PREFIX_KEY, "")
    version = _int(loaded.metadata.get(VERSION_KEY), 0)
    return StoreState(prefix, version, parameters, stored)


def _parsed_listing(raw: str) -> list[dict[str, Any]]:
    try:
        listing = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{PARAMETERS_KEY} is not valid JSON: {error}") from None
    if not isinstance(listing, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in listing
    ):
        raise InvalidArgument(f"{PARAMETERS_KEY} must be a list of objects with a name")
    return listing


def user_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The caller's part of a file's metadata: everything not under `paramstore.`."""
    return {key: value for key, value in metadata.items() if not key.startswith("paramstore.")}


def snapshot_step(metadata: Mapping[str, str]) -> int:
    return _int(metadata.get(STEP_KEY), NO_STEP)


def _info(
    store: str, snapshot_id: str, metadata: Mapping[str, str], size: int, *, created: int
) -> SnapshotInfo:
    return SnapshotInfo(
        store=store,
        id=snapshot_id,
        step=snapshot_step(metadata),
        created_unix_nanos=_int(metadata.get(CREATED_KEY), created),
        metadata=user_metadata(metadata),
        size_bytes=size,
        version=_int(metadata.get(VERSION_KEY), 0),
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _remove(folder: Path, snapshot_id: str) -> None:
    """Delete a snapshot with the files kept beside it (`<id>.<what>.safetensors`, such as a
    training session's optimizer state), so retention leaves nothing behind."""
    _file(folder, snapshot_id).unlink(missing_ok=True)
    for companion in folder.glob(f"{snapshot_id}.*.safetensors"):
        companion.unlink(missing_ok=True)


def _file(folder: Path, snapshot_id: str) -> Path:
    return folder / f"{snapshot_id}.safetensors"


def _damaged(snapshot_id: str, error: object) -> InvalidArgument:
    return InvalidArgument(f"snapshot {snapshot_id!r} is damaged: {error}")


def _not_found(store: str, snapshot_id: str) -> SnapshotNotFound:
    return SnapshotNotFound(f"store {store!r} has no snapshot {snapshot_id!r}")


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
