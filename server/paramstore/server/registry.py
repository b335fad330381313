"""The server's domain: named stores in memory, persisted by the storage catalog. No gRPC here.

Lock order, when more than one is held: the registry's lock, then the catalog's, then a store's
lock. No lock is held while a client's stream is read or written: requests are received whole
(or staged by storage) before a call here, and replies are sent from immutable states after it.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
from safetensors import safe_open

from paramstore import optimizer as opt
from paramstore.server import validation
from paramstore.server.diff import ParameterDiff, diff
from paramstore.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
    StoreNotFound,
)
from paramstore.server.initialization import initialize
from paramstore.server.limits import Budget, Limits, capacity_bytes
from paramstore.server.storage import (
    Backend,
    Catalog,
    Contents,
    PendingSnapshot,
    RetentionPolicy,
    SnapshotInfo,
    codec,
    open_backend,
)
from paramstore.server.storage.codec import NO_STEP
from paramstore.server.storage.retention import HAND_OVER
from paramstore.server.stores import Incoming, ParameterInfo, Store, StoreState

_log = logging.getLogger("paramstore.server")

DEFAULT_MAX_TENSOR_BYTES = 16 << 30


class PullPlan(NamedTuple):
    """A pull: the state it reads, each parameter with the data sent for it (None when it has
    none, or its tensor went with an earlier name), and the bytes of data sent in all."""

    state: StoreState
    parameters: list[tuple[ParameterInfo, np.ndarray | None]]
    data_bytes: int


class Ownership(Protocol):
    """Which stores this server may serve, when it is one replica of several
    (`paramstore.server.cluster`)."""

    def claim(self, name: str) -> None:
        """Make this replica the owner of a store about to be created, or raise `NotOwner`
        (naming the replica to ask) or `StorageUnavailable`."""

    def refuse(self, name: str) -> None:
        """Raise the error for a call on `name`, a store this replica does not hold:
        `NotOwner`, `StorageUnavailable` (being moved) or `StoreNotFound`."""

    def view(self) -> tuple[dict[str, builtins.list[str]], builtins.list[str]]:
        """Each live replica's address and the stores it owns, and the stores that exist but
        have no owner at this moment (being handed over, or their owner died)."""


class StoreRegistry:
    """Every store of one server, persisted under `data_dir` (`keep`: newest snapshots kept
    per store, 0 for all). Stores found there are recovered when the registry is made, unless
    the server is one replica of several: it then holds the stores it owns (`adopt`)."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        keep: int = 0,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
        s3_endpoint: str | None = None,
        s3_timeout: float = 30.0,
        limits: Limits | None = None,
        backend: Backend | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        """`data_dir`: a local folder or `s3://BUCKET[/PREFIX]` (see `storage.open_backend`);
        `backend`, when given, is used instead. `ownership`: this server is a replica that
        holds only the stores it owns; none is recovered here."""
        backend = backend or open_backend(data_dir, s3_endpoint=s3_endpoint,
                                          s3_timeout=s3_timeout)
        self.ownership = ownership
        self.catalog = Catalog(backend, keep=keep, max_tensor_bytes=max_tensor_bytes)
        self.max_tensor_bytes = max_tensor_bytes
        self.limits = limits or Limits()
        self._capacities: dict[str, tuple[StoreState, int]] = {}
        # Called with a store's name once it is deleted (a training session ends with it).
        self.on_delete: list[Callable[[str], None]] = []
        # The step a store's training is at (NO_STEP: none), for its hand-over snapshot.
        self.training_step: Callable[[str], int] = lambda name: NO_STEP
        self._lock = threading.Lock()
        self._stores: dict[str, Store] = {}
        if ownership is None:
            for name in self.catalog.store_names():
                self._recover(name)

    def _recover(self, name: str) -> bool:
        try:
            contents = self.catalog.open_store(name)
        except Exception:  # one store's trouble must not keep the others from being served
            _log.exception("store %s could not be opened; it is not served", name)
            return False
        if contents is not None:
            self._stores[name] = Store(name, contents.state, contents.optimizer, contents.steps)
        return contents is not None

    def adopt(self, name: str) -> bool:
        """Load store `name` from storage, now that this replica owns it; False when it does
        not exist (or could not be opened)."""
        with self._lock:
            return name in self._stores or self._recover(name)

    def hand_over(self, name: str, error: Exception) -> None:
        """Refuse every later write to store `name` with `error`, take a last snapshot of
        it when it holds anything (every acknowledged write is in it), then `drop` it."""
        store = self._stores.get(name)
        if store is None:
            return
        store.close(error)
        if store.state().parameters:
            self._last_snapshot(name, store)
        self.drop(name, error)

    def stop_training(self, name: str, error: Exception) -> None:
        """Refuse every later write to store `name`, in training on a server that stops, with
        `error`; when it changed since its newest snapshot, take a last one, so that its
        workers resume exactly after a restart (their applied steps are in it)."""
        store = self._stores.get(name)
        if store is None:  # handed over already, or deleted
            return
        store.close(error)
        snapshots = self.catalog.snapshots(name)
        state = store.state()
        if state.parameters and (not snapshots or snapshots[-1].version != state.version):
            self._last_snapshot(name, store)

    def _last_snapshot(self, name: str, store: Store) -> None:
        """Every write `store` acknowledged, at its training's step, marked as the server's
        own (`HAND_OVER`): retention does not count it against the user's snapshots."""
        self.catalog.take_snapshot(name, lambda: Contents(*store.capture()),
                                   step=self.training_step(name), metadata=HAND_OVER)

    def drop(self, name: str, error: Exception) -> Store | None:
        """Stop holding store `name` (another replica owns it now): every write still to come
        through it raises `error`. Returns the store, for a last snapshot."""
        with self._lock:
            store = self._stores.pop(name, None)
        if store is not None:
            store.close(error)
        self.catalog.forget(name)
        self._capacities.pop(name, None)
        return store

    # ---- stores ------------------------------------------------------------------------------

    def create(self, name: str) -> Store:
        """A new empty store, committed to storage. Raises `InvalidArgument` (name),
        `AlreadyExists`, `StorageUnavailable`."""
        validation.store_name(name)
        if self.ownership is not None:
            self.ownership.claim(name)
        with self._lock:
            if name in self._stores:
                raise AlreadyExists(f"store {name!r} already exists")
            self.catalog.create_store(name)
            store = self._stores[name] = Store(name)
        return store

    def get(self, name: str) -> Store:
        """The store `name`. Raises `InvalidArgument` (name), `StoreNotFound`."""
        validation.store_name(name)
        try:
            return self._stores[name]
        except KeyError:
            if self.ownership is not None:
                self.ownership.refuse(name)
            raise StoreNotFound(
                f"no store named {name!r}; create it first (existing: "
                f"{', '.join(sorted(self._stores)[:10]) or 'none'})"
            ) from None

    def list(self) -> builtins.list[Store]:
        """Every store, sorted by name."""
        with self._lock:
            return [self._stores[name] for name in sorted(self._stores)]

    def delete(self, name: str) -> None:
        """Delete a store and its snapshots, durably before this returns. Raises
        `StoreNotFound`, `StorageUnavailable` (the store is unchanged then)."""
        self.get(name)
        self.catalog.delete_store(name)
        with self._lock:
            self._stores.pop(name, None)
        self._capacities.pop(name, None)
        for hook in self.on_delete:
            hook(name)

    def exists(self, name: str) -> bool:
        """Whether a store `name` exists. Raises `InvalidArgument` (name)."""
        validation.store_name(name)
        return name in self._stores

    # ---- limits --------------------------------------------------------------------------------

    def budget(self, store: Store) -> Budget:
        """The room `limits` leave for one request to `store` (`Budget.admit` each parameter)."""
        return self.limits.budget(store.state(), self._other_stores_bytes(store.name))

    def _other_stores_bytes(self, name: str) -> int:
        if not self.limits.bounds_total:
            return 0
        return sum(self._capacity(store) for store in self.list() if store.name != name)

    def _capacity(self, store: Store) -> int:
        """`capacity_bytes` of the store's state, computed once per state (states never
        change: a write makes a new one)."""
        state = store.state()
        cached = self._capacities.get(store.name)
        if cached is None or cached[0] is not state:
            cached = self._capacities[store.name] = (state, capacity_bytes(state))
        return cached[1]

    # ---- parameters --------------------------------------------------------------------------

    def initialize(
        self, name: str, initializer: str, select: str, *, force_reinit: bool
    ) -> tuple[builtins.list[str], StoreState]:
        """Run an initializer on the store's selected parameters (see `initialization`)."""
        matches: Callable[[str], bool] = validation.select(select)
        return initialize(self.get(name), initializer, matches, force_reinit=force_reinit)

    def pull(self, name: str, names: builtins.list[str], select: str) -> PullPlan:
        """What a pull of `names` (or, without names, of the `select` regex) sends, from one
        state. A tied tensor travels once: a name whose tensor was sent already comes without
        data. Raises `ParameterNotFound`, `InvalidArgument` (a name given twice, a regex)."""
        state = self.get(name).state()
        if names:
            validation.distinct("the pull", names)
            infos = [state.info(each) for each in names]
        else:
            infos = state.select(validation.select(select))
        data = state.data
        sent: set[str] = set()
        parameters = []
        total = 0
        for info in infos:
            source = info.alias_of or info.name
            array = data.get(source)
            if array is not None and source not in sent:
                sent.add(source)
                total += array.nbytes
            else:
                array = None
            parameters.append((info, array))
        return PullPlan(state, parameters, total)

    # ---- the optimizer of a training store ------------------------------------------------------

    def optimizer_states(self, name: str) -> bytes:
        """The store's optimizer and its state as a safetensors file (`optimizer.save_states`).
        Raises `StoreNotFound`, `FailedPrecondition` (no optimizer)."""
        _, optimizer, _ = self.get(name).capture()
        if optimizer is None:
            raise FailedPrecondition(
                f"store {name!r} has no optimizer: set one (Trainer, kvstore.set_optimizer) first")
        return opt.dumps_states(optimizer)

    def load_optimizer_states(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Replace the store's optimizer and its state with those of such a file. Raises
        `StoreNotFound`, `InvalidArgument` (not such a file; nothing changes then)."""
        store = self.get(name)
        try:
            optimizer = opt.loads_states(data)
        except (ValueError, TypeError) as error:
            raise InvalidArgument(f"not an optimizer states file: {error}") from None
        _check_states_fit(optimizer, store.state())
        store.optimizer = optimizer

    # ---- ties --------------------------------------------------------------------------------

    def tie(self, name: str, alias: str, target: str) -> StoreState:
        """Make `alias` a second name of `target` (`Store.tie`), within the limits (a new
        name counts as a parameter). Raises `InvalidArgument`, `ResourceExhausted`, ..."""
        validation.parameter_name(alias)
        validation.parameter_name(target)
        store = self.get(name)
        root = store.state().info(target)
        self.budget(store).admit(dataclasses.replace(root, name=alias,
                                                     alias_of=root.alias_of or target))
        return store.tie(alias, target)

    def untie(self, name: str, alias: str) -> StoreState:
        """Give `alias` its own tensor again (`Store.untie`): the copy counts against the byte
        limits. Raises `ParameterNotFound`, `ResourceExhausted`."""
        store = self.get(name)
        info = store.state().parameters.get(alias)
        if info is not None and info.alias_of:
            self.budget(store).admit(dataclasses.replace(info, alias_of=None))
        return store.untie(alias)

    # ---- snapshots ---------------------------------------------------------------------------

    def snapshot(
        self,
        name: str,
        *,
        step: int = NO_STEP,
        metadata: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        delta: bool = False,
        request_id: str = "",
    ) -> SnapshotInfo:
        """Commit the store's current state (and optimizer state) as a new snapshot with
        `tags`; `delta`: only the tensors changed since the newest snapshot. A request id
        that took a snapshot already gets that snapshot, not another one. Raises
        `InvalidArgument` for a step outside [0, 2**63), reserved metadata or a bad tag
        (nothing is written then), and what `Catalog.finish_snapshot` raises."""
        step = validation.snapshot_step(step, NO_STEP)
        checked = validation.metadata(dict(metadata or {}))
        tags = [validation.tag_name(tag) for tag in dict.fromkeys(tags)]
        self.get(name)
        if request_id:
            taken = self.catalog.snapshot_of_request(name, request_id)
            if taken is not None:
                return taken
        return self.catalog.finish_snapshot(self.begin_snapshot(name, delta=delta), step=step,
                                            metadata=checked, tags=tags,
                                            request_id=request_id)

    def begin_snapshot(self, name: str, *, delta: bool = False) -> PendingSnapshot:
        """Capture the store for a snapshot that `catalog.finish_snapshot` writes later."""
        store = self.get(name)
        return self.catalog.begin_snapshot(name, lambda: Contents(*store.capture()),
                                           delta=delta)

    def snapshots(self, name: str) -> builtins.list[SnapshotInfo]:
        """The store's snapshots, oldest first."""
        self.get(name)
        return self.catalog.snapshots(name)

    def restore(self, name: str, snapshot_id: str, select: str = "") -> StoreState:
        """Replace the store's contents and optimizer state with a snapshot's; with `select`
        (a regex matched at the start of names), write only the parameters it selects (and
        their ties' targets), as a push would, and leave every other parameter and the
        optimizer as they are. Raises `SnapshotNotFound`, `InvalidArgument` (damaged file,
        regex), `ParameterNotFound` (nothing selected), `FailedPrecondition` (a selected
        parameter's shape or dtype differs from the store's); the store is unchanged then."""
        store = self.get(name)
        if not select:
            contents = self.catalog.read_snapshot(name, snapshot_id)
            self.limits.check_whole(contents.state, self._other_stores_bytes(name))
            return store.replace(contents.state, contents.optimizer)
        state = self.catalog.read_snapshot(name, snapshot_id, validation.select(select)).state
        if not state.parameters:
            raise ParameterNotFound(
                f"snapshot {snapshot_id!r} of store {name!r} has no parameter matching {select!r}")
        budget = self.budget(store)
        for info in state.parameters.values():
            budget.admit(info)
        items = [Incoming(info, state.data.get(info.name)) for info in state.parameters.values()]
        return store.push(store.state().prefix, items)

    def delete_snapshot(self, name: str, snapshot_id: str) -> None:
        self.get(name)
        self.catalog.delete_snapshot(name, snapshot_id)

    def diff(self, name: str, a: str, b: str) -> Sequence[ParameterDiff]:
        """Snapshots `a` and `b` compared parameter by parameter (see `diff.diff`). Raises
        `SnapshotNotFound`, `InvalidArgument` (damaged)."""
        self.get(name)
        return diff(self.catalog.read_snapshot(name, a).state,
                    self.catalog.read_snapshot(name, b).state)

    def tag(self, name: str, snapshot_id: str, tag: str) -> SnapshotInfo:
        """Give a snapshot a tag, moving it from the snapshot that had it."""
        self.get(name)
        return self.catalog.tag(name, snapshot_id, tag)

    def untag(self, name: str, tag: str) -> None:
        self.get(name)
        self.catalog.untag(name, tag)

    def set_retention(self, name: str, policy: RetentionPolicy | None) -> RetentionPolicy:
        """Set the store's retention policy (None: the server's default); the policy in force."""
        self.get(name)
        return self.catalog.set_retention(name, policy)

    def retention(self, name: str) -> tuple[RetentionPolicy, bool]:
        """The store's retention policy, and whether it is the server's default."""
        self.get(name)
        return self.catalog.retention(name)

    @contextlib.contextmanager
    def snapshot_file(
        self, name: str, snapshot_id: str, select: str = ""
    ) -> Iterator[tuple[SnapshotInfo, str]]:
        """A snapshot's description and a local file of it (of the parameters `select` picks,
        when given), for an export. Raises `ParameterNotFound` when `select` picks none."""
        self.get(name)
        matches = validation.select(select) if select else None
        with self.catalog.snapshot_file(name, snapshot_id, matches) as found:
            if matches is not None:  # refused as a restore of nothing is, not a file of nothing
                with safe_open(found[1], framework="numpy") as selected:
                    if not selected.keys():
                        raise ParameterNotFound(f"snapshot {snapshot_id!r} of store {name!r} "
                                                f"has no parameter matching {select!r}")
            yield found

    def import_snapshot(self, name: str, produce: Callable[[str], None]) -> SnapshotInfo:
        """Create store `name` from the safetensors file `produce(local_path)` writes: staged,
        validated and committed as one step, the file becoming the store's first snapshot.
        Raises `InvalidArgument`, `AlreadyExists`, `ResourceExhausted`, `StorageUnavailable`."""
        validation.store_name(name)
        if self.ownership is not None:
            self.ownership.claim(name)
        if name in self._stores:
            raise AlreadyExists(f"store {name!r} already exists; import under a new name")
        info, contents = self.catalog.import_store(name, produce,
                                                   check=self._import_check(name))
        with self._lock:
            self._stores[name] = Store(name, contents.state)
        return info

    def _import_check(self, name: str) -> Callable[[StoreState, Mapping[str, str]], None]:
        """What an imported file must pass before it is committed: its version, step, prefix
        and metadata as a client's would be, and every limit, counting the whole store."""

        def check(state: StoreState, metadata: Mapping[str, str]) -> None:
            validation.prefix(state.prefix)
            validation.version(state.version)
            validation.snapshot_step(codec.snapshot_step(metadata), NO_STEP)
            validation.metadata(codec.user_metadata(metadata))
            self.limits.check_whole(state, self._other_stores_bytes(name))

        return check


def _check_states_fit(optimizer: opt.Optimizer, state: StoreState) -> None:
    """Raise `InvalidArgument` unless each per-key state array of `optimizer` is floating-point
    and has its key's shape in `state`: a state that does not fit would fail every step."""
    for entry, array in optimizer.get_states().items():
        key, _, kind = entry.rpartition("/")
        stored = state.array(key) if key and kind != "count" else None
        if stored is None:
            continue
        if array.shape != stored.shape or array.dtype.kind != "f":
            raise InvalidArgument(
                f"optimizer state {entry!r} is {array.dtype}{list(array.shape)}, but key "
                f"{key!r} is {stored.dtype}{list(stored.shape)}: a state must be floating-point "
                "and of its key's shape"
            )
