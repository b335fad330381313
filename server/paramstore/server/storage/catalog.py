"""The commit protocol: every byte the server persists is written, committed and removed here.

Layout (keys of the backend; nothing else in the server builds one):

    stores/<store>/<incarnation>/created              the store exists (its commit record)
    stores/<store>/<incarnation>/deleted              tombstone: the store is gone
    stores/<store>/<incarnation>/snapshots/<id>.json  a snapshot is committed
    stores/<store>/<incarnation>/data/<id>.<random>.safetensors            its parameters
    stores/<store>/<incarnation>/data/<id>.<random>.optimizer.safetensors  its optimizer state
    stores/<store>/<incarnation>/tags/<tag>/<generation>.json  a tag: the snapshot it names
    stores/<store>/<incarnation>/retention/<generation>.json   the store's retention policy

A store re-created after a delete gets a new incarnation, so it never meets its predecessor's
data. The rules:

- Data is written under a new unique name, verified by the reader's own checks, then committed
  by one atomic, exclusive `create` of a small record. Nothing uncommitted is ever listed;
  what a crash leaves uncommitted is removed when the store is opened.
- A snapshot's id is allocated in the critical section that captures the state (and the
  optimizer state of a training store, committed with it), so ids and states never disagree.
  The commit record holds the training workers' last steps as of that capture (rank, step
  number, keys updated), so that whoever opens the store applies none of them again.
- Retention runs only after the new snapshot is committed, and never deletes a snapshot that
  a kept delta snapshot needs as its base; nor does a delete. It deletes newest first, so that
  a crash midway leaves no delta snapshot without its base.
- A delta snapshot's base is the newest snapshot whose arrays the catalog saw committed; the
  arrays still the very same objects (arrays are never modified in place) are the unchanged.
- A setting (a tag, a retention policy) changes by committing a record of a new generation
  beside the old: the newest generation is the setting, a null one its absence. The records
  it supersedes are removed after the commit, or when the store is next opened.
- A delete commits its tombstone before any data is removed: after any crash a store is there,
  at its newest committed snapshot, or gone. A tombstone that cannot be written is an error.
- An import writes its data and snapshot record first and commits the store's `created` record
  last: it creates the store with its snapshot, or leaves nothing.

Lock order: the catalog's guard, then a store's lock; the guard is never held through I/O on data.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, NamedTuple

from paramstore import checkpoint
from paramstore import optimizer as opt
from paramstore.server import validation
from paramstore.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    SnapshotNotFound,
    StorageUnavailable,
    StoreError,
    StoreNotFound,
)
from paramstore.server.storage import codec
from paramstore.server.storage.backend import Backend, BackendError
from paramstore.server.storage.retention import RetentionPolicy, doomed
from paramstore.server.storage.steps import reached
from paramstore.server.stores import AppliedStep, StoreState

_log = logging.getLogger("paramstore.server")

_STORES = "stores"
_TAGS = "tags"
_RETENTION = "retention"
LATEST = "latest"
_NO_LIMIT = 1 << 62


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
    tags: tuple[str, ...] = ()
    base: str = ""  # a delta snapshot's base


class Contents(NamedTuple):
    """What a snapshot restores: the store's state and, for a training store, its optimizer and
    its workers' last steps (rank -> step)."""

    state: StoreState
    optimizer: opt.Optimizer | None = None
    steps: Mapping[int, AppliedStep] = MappingProxyType({})


class PendingSnapshot(NamedTuple):
    """A snapshot whose id is allocated and whose contents are captured, not yet written."""

    files: _StoreFiles
    id: str
    contents: Contents
    base: str = ""  # for a delta: the base snapshot, and the stored names whose data it holds
    unchanged: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Record:
    """A committed snapshot, as its commit record describes it."""

    info: SnapshotInfo
    parameters: str  # the data object's key
    optimizer: str | None
    checksums: dict[str, int]  # CRC-32C of each tensor the parameters hold
    base: str = ""  # a delta snapshot's base id
    request: str = ""  # the id of the request that took it, when it carried one
    steps: Mapping[int, AppliedStep] = field(default_factory=dict)  # its workers' last steps


@dataclass
class _StoreFiles:
    """What the catalog knows of one store. `lock` serializes its commits."""

    name: str
    incarnation: int
    committed: bool = True  # False while an import is staging
    deleted: bool = False
    records: dict[str, _Record] = field(default_factory=dict)
    damaged: set[str] = field(default_factory=set)
    next_id: int = 1
    tags: dict[str, str] = field(default_factory=dict)  # tag -> snapshot id
    policy: RetentionPolicy | None = None  # None: the catalog's default
    generations: dict[str, int] = field(default_factory=dict)  # setting folder -> newest
    # The newest snapshot whose arrays were seen, and those arrays (weakly: never kept alive).
    seen: tuple[str, dict[str, weakref.ref]] | None = None
    writers: int = 0  # snapshots begun and not yet finished
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.idle = threading.Condition(self.lock)

    @property
    def prefix(self) -> str:
        return f"{_STORES}/{self.name}/{self.incarnation:020d}"


class Catalog:
    """Every store's persisted bytes on one backend; `keep` newest snapshots kept (0: all)."""

    def __init__(
        self, backend: Backend, *, keep: int = 0, max_tensor_bytes: int = _NO_LIMIT
    ) -> None:
        if keep < 0:
            raise ValueError(f"keep must be 0 (keep all) or positive, got {keep}")
        self.backend = backend
        self.keep = keep
        self.default_policy = RetentionPolicy(keep_last=keep)
        self.max_tensor_bytes = max_tensor_bytes
        self._guard = threading.Lock()
        self._stores: dict[str, _StoreFiles] = {}

    # ---- opening ---------------------------------------------------------------------------

    def store_names(self) -> list[str]:
        """The names under which the backend holds anything (committed or not), sorted."""
        names = []
        with _storage_errors("list the stores"):
            folders = self.backend.folders(_STORES)
        for name in folders:
            try:
                names.append(validation.store_name(name))
            except InvalidArgument:
                _log.warning("ignoring %s: not a store name",
                             self.backend.location(f"{_STORES}/{name}"))
        return names

    def open_store(self, name: str) -> Contents | None:
        """Load store `name`: finish what a crash interrupted (purge tombstoned and uncommitted
        incarnations, remove uncommitted data) and return its newest sound snapshot's contents,
        an empty state when it has none, or None when the store does not exist."""
        live = None
        for incarnation in self._incarnations(name):
            files = _StoreFiles(name, incarnation)
            keys = set(self._list(files.prefix))
            if f"{files.prefix}/deleted" in keys or f"{files.prefix}/created" not in keys:
                self._purge(files)  # a delete to finish, or a create or import never committed
                continue
            if live is not None:
                _log.error("store %s has two live incarnations; using the newer", name)
            live = files
        if live is None:
            return None
        self._load_records(live)
        with self._guard:
            self._stores[name] = live
        return self._newest_contents(live)

    def forget(self, name: str) -> None:
        """Stop tracking store `name` (another server owns it now); its files stay."""
        with self._guard:
            self._stores.pop(name, None)

    def _incarnations(self, name: str) -> list[int]:
        with _storage_errors("list the stores"):
            folders = self.backend.folders(f"{_STORES}/{name}")
        return sorted(int(folder) for folder in folders if folder.isdigit())

    def _load_records(self, files: _StoreFiles) -> None:
        self.backend.remove_partial_writes(files.prefix)
        keys = self._list(files.prefix)
        recorded = set()  # ids with a record, damaged or not: their data stays for inspection
        for key in keys:
            if key.startswith(f"{files.prefix}/snapshots/") and key.endswith(".json"):
                recorded.add(_id_of(key))
                try:
                    record = _parse_record(files.name, self.backend.read(key))
                except (ValueError, KeyError, TypeError, StoreError) as error:
                    _log.warning("store %s: commit record %s is damaged, skipped: %s",
                                 files.name, self.backend.location(key), error)
                    continue
                files.records[record.info.id] = record
        files.records = dict(sorted(files.records.items(), key=lambda item: int(item[0])))
        for snapshot_id, record in files.records.items():  # oldest first: bases before deltas
            if record.base and (record.base not in files.records or record.base in files.damaged):
                _log.warning("store %s: delta snapshot %s has lost its base %s, skipped and "
                             "never served", files.name, snapshot_id, record.base)
                files.damaged.add(snapshot_id)
        files.next_id = max((int(id_) for id_ in recorded if id_.isdigit()), default=0) + 1
        for key in keys:
            if key.startswith(f"{files.prefix}/data/") and _id_of(key) not in recorded:
                self.backend.delete(key)  # written, never committed
        self._load_settings(files, keys)

    def _load_settings(self, files: _StoreFiles, keys: list[str]) -> None:
        """Read each setting's newest record; remove the ones it superseded."""
        newest: dict[str, tuple[int, str]] = {}
        for key in keys:
            folder, _, leaf = key[len(files.prefix) + 1:].rpartition("/")
            if not _is_setting(folder) or not leaf.endswith(".json"):
                continue
            if not leaf.removesuffix(".json").isdigit():
                continue
            generation = int(leaf.removesuffix(".json"))
            if folder in newest and newest[folder][0] > generation:
                self.backend.delete(key)
                continue
            if folder in newest:
                self.backend.delete(newest[folder][1])
            newest[folder] = generation, key
        for folder, (generation, key) in newest.items():
            files.generations[folder] = generation
            try:
                value = json.loads(self.backend.read(key))
                if value is None:
                    self.backend.delete(key)  # a removal that a crash interrupted
                elif folder == _RETENTION:
                    files.policy = RetentionPolicy.from_json(value)
                elif value["id"] in files.records:
                    files.tags[folder.removeprefix(f"{_TAGS}/")] = value["id"]
                else:  # its snapshot was deleted
                    self._delete_quietly(key)
            except (ValueError, KeyError, TypeError, StoreError) as error:
                _log.warning("store %s: setting %s is damaged, ignored: %s", files.name, key,
                             error)

    def _newest_contents(self, files: _StoreFiles) -> Contents:
        for snapshot_id in reversed(files.records):
            try:
                contents = self._read(files, snapshot_id)
            except InvalidArgument:
                continue  # damaged: logged, and never served
            _log.info("store %s: recovered from snapshot %s", files.name, snapshot_id)
            _saw(files, snapshot_id, contents.state)
            return contents
        return Contents(StoreState())

    # ---- stores ------------------------------------------------------------------------------

    def create_store(self, name: str) -> None:
        """Commit a new empty store. Raises `AlreadyExists`, `StorageUnavailable`."""
        files = self._reserve(name)
        try:
            self._commit(f"{files.prefix}/created", _created_record(name))
            reached("create.committed")
        except BaseException:
            self._release(files)
            raise
        files.committed = True

    def delete_store(self, name: str) -> None:
        """Delete a store and everything it holds. The tombstone is committed before anything
        is removed. Raises `StoreNotFound`, `StorageUnavailable` (nothing changed then)."""
        files = self._files(name)
        with files.lock:
            if files.deleted:
                raise StoreNotFound(f"no store named {name!r}")
            with _storage_errors("delete the store"):
                self.backend.create(f"{files.prefix}/deleted", _created_record(name))
            files.deleted = True
            reached("delete.tombstoned")
            # Snapshots in flight see the tombstone, remove what they wrote and give up: only
            # then may the files go, or a late write would bring back the store's folder.
            files.idle.wait_for(lambda: files.writers == 0)
        self._release(files)
        try:
            self._purge(files)
        except OSError as error:  # the store is gone; what is left is removed at the next start
            _log.warning("store %s: deleted, but removing its files failed: %s", name, error)

    def _purge(self, files: _StoreFiles) -> None:
        """Remove an incarnation: data first, the `created` record next, the tombstone last, so
        that an interrupted purge is still a tombstoned (or uncommitted) incarnation."""
        self.backend.remove_partial_writes(files.prefix)
        keys = self._list(files.prefix)
        last = [f"{files.prefix}/created", f"{files.prefix}/deleted"]
        for key in keys:
            if key not in last:
                self.backend.delete(key)
        reached("delete.data-removed")
        for key in last:
            self.backend.delete(key)

    # ---- snapshots ---------------------------------------------------------------------------

    def begin_snapshot(
        self, name: str, capture: Callable[[], Contents], *, delta: bool = False
    ) -> PendingSnapshot:
        """Allocate the next snapshot id and call `capture()` for what it will hold, in one
        critical section, so that ids and states never disagree. Quick: the writing is
        `finish_snapshot`'s, which may run on another thread. `delta`: store only the tensors
        changed since the newest snapshot (a full snapshot when there is none to compare
        with). Raises `StoreNotFound`."""
        files = self._files(name)
        with files.lock:
            if files.deleted:
                raise StoreNotFound(f"no store named {name!r}")
            snapshot_id = f"{files.next_id:08d}"
            files.next_id += 1
            contents = capture()
            base, unchanged = "", frozenset()
            if delta and files.seen and files.seen[0] in files.records:
                base, arrays = files.seen
                unchanged = frozenset(
                    name for name, array in contents.state.data.items()
                    if (seen := arrays.get(name)) is not None and seen() is array)
            files.writers += 1
        return PendingSnapshot(files, snapshot_id, contents, base, unchanged)

    def finish_snapshot(
        self,
        pending: PendingSnapshot,
        *,
        step: int = codec.NO_STEP,
        metadata: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        request_id: str = "",
    ) -> SnapshotInfo:
        """Write, verify and commit a begun snapshot, give it `tags` (moved from the
        snapshots that had them), then apply retention. `request_id` is recorded with it
        (`snapshot_of_request`).

        Raises `StoreNotFound` (deleted meanwhile), `InvalidArgument` or `ResourceExhausted`
        (the file would break a reader's limit, or the tags the store's), `StorageUnavailable`;
        nothing is committed or deleted then."""
        files = pending.files
        try:
            with files.lock:
                _check_tag_room(files, tags)
            record = self._write_snapshot(files, pending, step, metadata or {}, request_id)
            with files.lock:
                if files.seen is None or int(files.seen[0]) < int(pending.id):
                    _saw(files, pending.id, pending.contents.state)
                files.records = dict(sorted({**files.records, pending.id: record}.items(),
                                            key=lambda item: int(item[0])))
                for tag in tags:
                    self._set_tag(files, tag, pending.id)
                self._apply_retention(files)
                return self._described(files, record)
        finally:
            with files.lock:
                files.writers -= 1
                files.idle.notify_all()

    def take_snapshot(
        self,
        name: str,
        capture: Callable[[], Contents],
        *,
        step: int = codec.NO_STEP,
        metadata: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
    ) -> SnapshotInfo:
        """`begin_snapshot`, then `finish_snapshot`."""
        return self.finish_snapshot(self.begin_snapshot(name, capture), step=step,
                                    metadata=metadata, tags=tags)

    def _write_snapshot(
        self,
        files: _StoreFiles,
        pending: PendingSnapshot,
        step: int,
        metadata: Mapping[str, str],
        request_id: str = "",
    ) -> _Record:
        snapshot_id, contents = pending.id, pending.contents
        base = (pending.base, pending.unchanged) if pending.base else None
        tensors, aliases, file_metadata = codec.encode(files.name, contents.state, step, metadata,
                                                       base)
        token = secrets.token_hex(4)
        parameters = f"{files.prefix}/data/{snapshot_id}.{token}.safetensors"
        optimizer = None
        try:
            with _storage_errors("write the snapshot"), _refusals():
                # Laid out to pass a reader's checks of the file's structure (its header within
                # the readers' limit, every tensor within the data) before anything is written.
                # What the listing holds passed the same checks a reader applies when it
                # entered the store.
                planned = checkpoint.plan(tensors, aliases=aliases, metadata=file_metadata)
                reached("snapshot.verified")
                checksums = planned.checksums_while(  # for the record
                    lambda: self.backend.write_checkpoint(parameters, planned))
                size = planned.size
                if contents.optimizer is not None:
                    optimizer = f"{files.prefix}/data/{snapshot_id}.{token}.optimizer.safetensors"
                    self.backend.write(optimizer, lambda path: opt.write_states(
                        path, contents.optimizer))  # type: ignore[arg-type]
            reached("snapshot.data-written")
            info = SnapshotInfo(
                files.name, snapshot_id, step, int(file_metadata[codec.CREATED_KEY]),
                dict(metadata), size, contents.state.version, base=pending.base,
            )
            record = _Record(info, parameters, optimizer, checksums, pending.base, request_id,
                             contents.steps)
            with files.lock:  # a delete commits its tombstone under this lock: never both
                if files.deleted:
                    raise StoreNotFound(f"store {files.name!r} was deleted meanwhile")
                if pending.base and pending.base not in files.records:
                    raise FailedPrecondition(f"snapshot {pending.base}, the base of this delta "
                                             "snapshot, was deleted meanwhile; take it again")
                self._commit(f"{files.prefix}/snapshots/{snapshot_id}.json", _record_json(record))
        except BaseException:
            self._delete_quietly(parameters, optimizer)
            raise
        reached("snapshot.committed")
        return record

    def _apply_retention(self, files: _StoreFiles) -> None:
        policy = files.policy or self.default_policy
        infos = [record.info for record in files.records.values()]
        bases = {snapshot_id: record.base for snapshot_id, record in files.records.items()
                 if record.base}
        # Newest first: a delta goes before its base (always older), so that a crash between
        # two deletions never leaves a delta whose base is gone.
        for snapshot_id in reversed(doomed(policy, infos, set(files.tags.values()), bases)):
            record = files.records.pop(snapshot_id)
            try:
                self.backend.delete(f"{files.prefix}/snapshots/{snapshot_id}.json")
                reached("retention.record-deleted")
                self._delete_quietly(record.parameters, record.optimizer)
                reached("retention.data-removed")
            except OSError as error:
                _log.warning("store %s: retention could not delete snapshot %s: %s",
                             files.name, snapshot_id, error)
            _log.info("store %s: retention deleted snapshot %s", files.name, snapshot_id)

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """The store's committed, readable snapshots, oldest first."""
        files = self._files(name)
        with files.lock:
            return [self._described(files, record) for snapshot_id, record
                    in files.records.items() if snapshot_id not in files.damaged]

    def snapshot_of_request(self, name: str, request_id: str) -> SnapshotInfo | None:
        """The snapshot that the request `request_id` took, if one is kept."""
        files = self._files(name)
        with files.lock:
            for record in files.records.values():
                if record.request == request_id:
                    return self._described(files, record)
        return None

    def snapshot(self, name: str, snapshot_id: str) -> SnapshotInfo:
        """One snapshot's description (`snapshot_id` as `resolve` takes it). Raises
        `SnapshotNotFound`, `InvalidArgument` (damaged)."""
        files = self._files(name)
        with files.lock:
            return self._described(files, self._record(files, snapshot_id))

    def resolve(self, name: str, snapshot_id: str) -> str:
        """The id that `snapshot_id` names: an id, the same without its zero padding ("7"),
        "latest" (the newest readable snapshot) or a tag. Raises `SnapshotNotFound`,
        `InvalidArgument` (not a possible id)."""
        return self._resolve(self._files(name), snapshot_id)

    # ---- tags and retention ------------------------------------------------------------------

    def tag(self, name: str, snapshot_id: str, tag: str) -> SnapshotInfo:
        """Give snapshot `snapshot_id` the tag `tag`, moving it from the snapshot that had it.
        Raises `SnapshotNotFound`, `InvalidArgument` (tag), `ResourceExhausted` (the store has
        `MAX_TAGS` others), `StorageUnavailable`."""
        validation.tag_name(tag)
        files = self._files(name)
        with files.lock:
            record = self._record(files, snapshot_id)
            _check_tag_room(files, [tag])
            self._set_tag(files, tag, record.info.id)
            return self._described(files, record)

    def untag(self, name: str, tag: str) -> None:
        """Remove tag `tag`. Raises `SnapshotNotFound` (no such tag), `StorageUnavailable`."""
        validation.tag_name(tag)
        files = self._files(name)
        with files.lock:
            if tag not in files.tags:
                raise SnapshotNotFound(f"store {name!r} has no tag {tag!r}")
            self._put_setting(files, f"{_TAGS}/{tag}", None, "untag")
            del files.tags[tag]

    def set_retention(self, name: str, policy: RetentionPolicy | None) -> RetentionPolicy:
        """Make `policy` the store's retention from its next snapshot on (None, or a policy
        without rules: the server's default again); returns the policy in force. Raises
        `StorageUnavailable`."""
        files = self._files(name)
        kept = None if policy is None or policy.empty else policy
        with files.lock:
            self._put_setting(files, _RETENTION, kept and kept.to_json(), "retention-policy")
            files.policy = kept
        return kept or self.default_policy

    def retention(self, name: str) -> tuple[RetentionPolicy, bool]:
        """The store's retention policy, and whether it is the server's default."""
        files = self._files(name)
        return files.policy or self.default_policy, files.policy is None

    def _set_tag(self, files: _StoreFiles, tag: str, snapshot_id: str) -> None:
        if files.tags.get(tag) != snapshot_id:
            self._put_setting(files, f"{_TAGS}/{tag}", {"id": snapshot_id}, "tag")
            files.tags[tag] = snapshot_id

    def _put_setting(self, files: _StoreFiles, folder: str, value: object, step: str) -> None:
        """Commit `value` (None: the setting's absence) as the newest generation of `folder`,
        then remove the generations it supersedes. Called under `files.lock`."""
        generation = files.generations.get(folder, 0) + 1
        key = f"{files.prefix}/{folder}/{generation:020d}.json"
        self._commit(key, json.dumps(value).encode())
        files.generations[folder] = generation
        reached(f"{step}.committed")
        superseded = [old for old in self._list(f"{files.prefix}/{folder}") if old != key]
        self._delete_quietly(*superseded, *([key] if value is None else []))
        reached(f"{step}.superseded-removed")

    def _described(self, files: _StoreFiles, record: _Record) -> SnapshotInfo:
        tags = sorted(tag for tag, snapshot_id in files.tags.items()
                      if snapshot_id == record.info.id)
        return replace(record.info, tags=tuple(tags))

    def read_snapshot(
        self, name: str, snapshot_id: str, select: Callable[[str], bool] | None = None
    ) -> Contents:
        """What a snapshot restores, its arrays mapped from storage; with `select`, only the
        parameters it keeps (and their ties' targets), reading only their bytes, and no
        optimizer. Raises `SnapshotNotFound`, `InvalidArgument` (damaged)."""
        return self._read(self._files(name), snapshot_id, select)

    def _read(
        self, files: _StoreFiles, snapshot_id: str, select: Callable[[str], bool] | None = None
    ) -> Contents:
        record = self._record(files, snapshot_id)
        snapshot_id = record.info.id
        try:
            base = self._read(files, record.base, select).state if record.base else None
            with _storage_errors("read the snapshot"):
                loaded = self.backend.open_checkpoint(record.parameters, record.checksums,
                                                      select)
                state = codec.decode(loaded, self.max_tensor_bytes, select, base)
            optimizer = None
            if record.optimizer is not None and select is None:
                with _storage_errors("read the snapshot"), \
                        self.backend.local_file(record.optimizer) as path:
                    optimizer = opt.load_states(path)
        except (checkpoint.CheckpointError, InvalidArgument, FileNotFoundError) as error:
            _log.warning("store %s: snapshot %s (%s) is damaged, skipped and never served: %s",
                         files.name, snapshot_id, self.backend.location(record.parameters), error)
            files.damaged.add(snapshot_id)
            raise _damaged(snapshot_id, error) from None
        return Contents(state, optimizer, record.steps if select is None else {})

    @contextlib.contextmanager
    def snapshot_file(
        self, name: str, snapshot_id: str, select: Callable[[str], bool] | None = None
    ) -> Iterator[tuple[SnapshotInfo, str]]:
        """A snapshot's description and a local file of its parameters, for an export; the file
        stays readable for the context even if retention deletes the snapshot meanwhile.
        With `select`, or for a delta snapshot, a temporary file of the full state (only the
        parameters `select` keeps and their ties' targets, reading only their bytes);
        `size_bytes` is then that file's."""
        files = self._files(name)
        with files.lock:
            record = self._record(files, snapshot_id)
            info = self._described(files, record)
        if select is None and not record.base:
            try:
                with self.backend.local_file(record.parameters) as path, open(path, "rb"):
                    yield info, path
                    return
            except FileNotFoundError:
                raise SnapshotNotFound(f"snapshot {snapshot_id!r} was deleted meanwhile"
                                       ) from None
        state = self._read(files, record.info.id, select).state
        with _refusals(), tempfile.TemporaryDirectory() as folder:
            full = os.path.join(folder, "snapshot.safetensors")
            tensors, aliases, metadata = codec.encode(name, state, info.step, info.metadata)
            checkpoint.write(full, tensors, aliases=aliases, metadata=metadata)
            yield replace(info, size_bytes=os.path.getsize(full), base=""), full

    def delete_snapshot(self, name: str, snapshot_id: str) -> None:
        """Delete one snapshot. Raises `SnapshotNotFound`, `StorageUnavailable`."""
        files = self._files(name)
        with files.lock:
            record = self._record(files, snapshot_id, damaged_too=True)
            snapshot_id = record.info.id
            deltas = [delta for delta, kept in files.records.items() if kept.base == snapshot_id]
            if deltas:
                raise FailedPrecondition(
                    f"snapshot {snapshot_id} is the base of delta snapshot {deltas[0]}: delete "
                    "the deltas first, or export them (an export is a full file)")
            with _storage_errors("delete the snapshot"):
                self.backend.delete(f"{files.prefix}/snapshots/{snapshot_id}.json")
            del files.records[snapshot_id]
            files.damaged.discard(snapshot_id)
            reached("delete-snapshot.record-deleted")
            self._delete_quietly(record.parameters, record.optimizer)
            for tag in [tag for tag, target in files.tags.items() if target == snapshot_id]:
                # A tag naming a deleted snapshot is ignored when the store is opened.
                del files.tags[tag]
                self._delete_quietly(*self._list(f"{files.prefix}/{_TAGS}/{tag}"))

    # ---- imports -----------------------------------------------------------------------------

    def import_store(
        self, name: str, produce: Callable[[str], None],
        check: Callable[[StoreState, Mapping[str, str]], None] | None = None,
    ) -> tuple[SnapshotInfo, Contents]:
        """Create store `name` from the safetensors file `produce(local_path)` writes, as its
        first snapshot: staged, verified, and committed by the store's `created` record, so
        that a failure or crash leaves nothing. `check(state, metadata)` may refuse the file
        (by raising) before anything is committed. Raises `AlreadyExists`, `InvalidArgument`,
        `ResourceExhausted`, `StorageUnavailable`."""
        files = self._reserve(name)
        try:
            snapshot_id = f"{files.next_id:08d}"
            parameters = f"{files.prefix}/data/{snapshot_id}.{secrets.token_hex(4)}.safetensors"
            with _storage_errors("stage the import"):
                size = self.backend.write(parameters, produce)
            reached("import.data-written")
            try:
                with self.backend.local_file(parameters) as path:
                    loaded = checkpoint.open_mapped(path)
            except checkpoint.CheckpointError as error:
                raise InvalidArgument(f"not a valid safetensors file: {error}") from None
            checksums = checkpoint.checksums_of(loaded)
            state = codec.decode(loaded, self.max_tensor_bytes)
            if check is not None:
                check(state, loaded.metadata)
            reached("import.verified")
            info = SnapshotInfo(
                name, snapshot_id, codec.snapshot_step(loaded.metadata), time.time_ns(),
                codec.user_metadata(loaded.metadata), size, state.version,
            )
            record = _Record(info, parameters, None, checksums)
            self._commit(f"{files.prefix}/snapshots/{snapshot_id}.json", _record_json(record))
            reached("import.snapshot-recorded")
            self._commit(f"{files.prefix}/created", _created_record(name))
            reached("import.committed")
        except BaseException:
            with contextlib.suppress(OSError):
                self._purge(files)
            self._release(files)
            raise
        files.records[snapshot_id] = record
        files.next_id += 1
        files.committed = True
        return info, Contents(state)

    # ---- plumbing ----------------------------------------------------------------------------

    def _reserve(self, name: str) -> _StoreFiles:
        """Claim `name` for a store being created, under a new incarnation."""
        with self._guard:
            if name in self._stores:
                raise AlreadyExists(f"store {name!r} already exists")
            newest = max(self._incarnations(name), default=0)
            # Later than any earlier incarnation, even one whose files are gone.
            files = _StoreFiles(name, max(newest + 1, time.time_ns()), committed=False)
            self._stores[name] = files
            return files

    def _release(self, files: _StoreFiles) -> None:
        with self._guard:
            if self._stores.get(files.name) is files:
                del self._stores[files.name]

    def _files(self, name: str) -> _StoreFiles:
        files = self._stores.get(name)
        if files is None or not files.committed or files.deleted:
            raise StoreNotFound(f"no store named {name!r}")
        return files

    def _record(self, files: _StoreFiles, snapshot_id: str, *, damaged_too: bool = False
                ) -> _Record:
        snapshot_id = self._resolve(files, snapshot_id)
        record = files.records.get(snapshot_id)
        if record is None:
            raise SnapshotNotFound(f"store {files.name!r} has no snapshot {snapshot_id!r}")
        if snapshot_id in files.damaged and not damaged_too:
            raise _damaged(snapshot_id, "it failed its checks when it was read")
        return record

    def _resolve(self, files: _StoreFiles, snapshot_id: str) -> str:
        validation.snapshot_id(snapshot_id)
        if snapshot_id.isdigit():
            return f"{int(snapshot_id):08d}"
        if snapshot_id == LATEST:
            sound = [found for found in files.records if found not in files.damaged]
            if not sound:
                raise SnapshotNotFound(f"store {files.name!r} has no snapshots yet")
            return sound[-1]
        found = files.tags.get(snapshot_id)
        if found is None:
            raise SnapshotNotFound(
                f"store {files.name!r} has no snapshot or tag {snapshot_id!r} (ids look like "
                f"00000001 or 1; 'latest' is the newest; tags: "
                f"{', '.join(sorted(files.tags)) or 'none'})")
        return found

    def _commit(self, key: str, data: bytes) -> None:
        with _storage_errors("commit"):
            if not self.backend.create(key, data):
                raise StorageUnavailable(f"{key} was committed by another writer; retry")

    def _list(self, prefix: str) -> list[str]:
        with _storage_errors("list the stores"):
            return self.backend.list(prefix)

    def _delete_quietly(self, *keys: str | None) -> None:
        for key in filter(None, keys):
            try:
                self.backend.delete(key)
            except OSError as error:
                _log.warning("could not delete %s (removed at the next start): %s", key, error)


def inspect_file(path: str | os.PathLike[str]) -> tuple[StoreState, dict[str, str]]:
    """The store a safetensors file would import as, and its metadata (the listing left out),
    read with the checks of an import. Raises `CheckpointError` naming the defect."""
    loaded = checkpoint.load(path)
    try:
        state = codec.decode(loaded)
    except StoreError as error:
        raise checkpoint.CheckpointError(f"{os.fspath(path)}: {error}") from None
    return state, {key: value for key, value in loaded.metadata.items()
                   if key != codec.PARAMETERS_KEY}


@contextlib.contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    """I/O failures as the domain's errors, without paths of the server's disk."""
    try:
        yield
    except StoreError:
        raise
    except BackendError as error:
        _log.error("could not %s: %s", action, error)
        raise StorageUnavailable(f"could not {action}: {error}; nothing was committed") from None
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResourceExhausted(f"could not {action}: the server's storage is full") from None
        _log.exception("could not %s", action)
        raise StorageUnavailable(
            f"could not {action}: storage failed ({error.strerror or type(error).__name__}); "
            "nothing was committed"
        ) from None


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """A file the codec refuses to write or read back, as the caller's error."""
    try:
        yield
    except checkpoint.CheckpointError as error:
        if "limit" in str(error):
            raise ResourceExhausted(f"the snapshot would break a reader's limit: {error}"
                                    ) from None
        raise InvalidArgument(f"the snapshot would not be readable: {error}") from None


def _check_tag_room(files: _StoreFiles, tags: Sequence[str]) -> None:
    """Raise `ResourceExhausted` if giving `tags` would make the store's tags more than
    `validation.MAX_TAGS`. Called under `files.lock`."""
    count = len(files.tags.keys() | set(tags))
    if count > validation.MAX_TAGS:
        raise ResourceExhausted(f"store {files.name!r} would have {count} tags, more than the "
                                f"{validation.MAX_TAGS} a store may have: untag some first")


def _damaged(snapshot_id: str, error: object) -> InvalidArgument:
    return InvalidArgument(f"snapshot {snapshot_id!r} is damaged: {error}")


def _id_of(key: str) -> str:
    """The snapshot id a record or data key belongs to (`.../<id>.json`, `.../<id>.<...>`)."""
    return key.rsplit("/", 1)[1].split(".", 1)[0]


def _created_record(name: str) -> bytes:
    return json.dumps({"store": name, "created_unix_nanos": time.time_ns()}).encode()


def _record_json(record: _Record) -> bytes:
    info = record.info
    return json.dumps({
        "id": info.id, "step": info.step, "created_unix_nanos": info.created_unix_nanos,
        "metadata": info.metadata, "size_bytes": info.size_bytes, "version": info.version,
        "parameters": record.parameters, "optimizer": record.optimizer,
        "checksums": record.checksums, "base": record.base, "request": record.request,
        "steps": _steps_json(record.steps),
    }, separators=(",", ":")).encode()


def _steps_json(steps: Mapping[int, AppliedStep]) -> list[dict[str, Any]]:
    """The workers' last steps, the ranks whose steps are alike together (in sync training,
    every rank's last step is the same once it is complete)."""
    ranks: dict[AppliedStep, list[int]] = {}
    for rank, step in sorted(steps.items()):
        ranks.setdefault(step, []).append(rank)
    return [{"ranks": alike, "step": step.number, "keys": sorted(step.keys)}
            for step, alike in ranks.items()]


def _parse_steps(raw: object) -> dict[int, AppliedStep]:
    if not isinstance(raw, list):
        raise ValueError("steps must be a list")
    steps = {}
    for entry in raw:
        keys = entry["keys"]
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError("the keys of a step must be names")
        step = AppliedStep(int(entry["step"]), frozenset(keys))
        for rank in entry["ranks"]:
            steps[int(rank)] = step
    return steps


def _parse_record(store: str, data: bytes) -> _Record:
    raw: dict[str, Any] = json.loads(data)
    metadata = raw["metadata"]
    if not isinstance(metadata, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise ValueError("metadata must map strings to strings")
    info = SnapshotInfo(
        store, validation.snapshot_id(raw["id"]), int(raw["step"]),
        int(raw["created_unix_nanos"]), metadata, int(raw["size_bytes"]), int(raw["version"]),
    )
    optimizer, base = raw["optimizer"], raw.get("base") or ""
    checksums = raw["checksums"]
    if not isinstance(checksums, dict) or not all(
            isinstance(value, int) for value in checksums.values()):
        raise ValueError("checksums must map tensor names to integers")
    if base:
        info = replace(info, base=validation.snapshot_id(base))
    return _Record(info, str(raw["parameters"]), None if optimizer is None else str(optimizer),
                   checksums, info.base, str(raw.get("request") or ""),
                   _parse_steps(raw.get("steps") or []))


def _saw(files: _StoreFiles, snapshot_id: str, state: StoreState) -> None:
    """Remember the arrays of the newest snapshot, the base of the next delta snapshot."""
    files.seen = snapshot_id, {name: weakref.ref(array) for name, array in state.data.items()}


def _is_setting(folder: str) -> bool:
    return folder == _RETENTION or (folder.startswith(f"{_TAGS}/") and folder.count("/") == 1)
