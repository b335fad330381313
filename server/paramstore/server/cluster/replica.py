"""One replica of several: which stores it holds, kept in step with etcd.

Every `interval` seconds the replica reads the live replicas, the owners and the stores from
etcd, computes who should own what (`placement.assign`), and moves: it takes the unowned stores
placed on it (loading each from storage), and hands over the ones placed elsewhere (no write
accepted after its last snapshot, then the owner key released for the other to take). A store
whose owner died is unowned once the owner's lease expires, and is taken at the next round.

Lock order: `_moves` (one store moving at a time), then the registry's locks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from paramstore.server.cluster.membership import ClusterConfig, Membership, unavailable
from paramstore.server.cluster.placement import assign
from paramstore.server.cluster.records import RecordsBackend
from paramstore.server.errors import NotOwner, StorageUnavailable, StoreError, StoreNotFound
from paramstore.server.registry import StoreRegistry
from paramstore.server.storage import Backend, BackendError

_log = logging.getLogger("paramstore.server")


class Replica:
    """The registry's `Ownership` in a cluster: `start()` joins and keeps the registry's
    stores those this replica owns; `close()` hands them all over and leaves."""

    def __init__(self, config: ClusterConfig, data: Backend) -> None:
        self.membership = Membership(config, on_lost=self._lost)
        self.backend = RecordsBackend(data, self.membership)
        self.address = config.advertise
        self.interval = min(0.5, config.lease_ttl / 5)
        self.registry: StoreRegistry | None = None
        # Called with a store's name when it leaves this replica.
        self.on_release: list[Callable[[str], None]] = []
        self._moves = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def set_address(self, address: str) -> None:
        """Advertise `address` (the bound one, when none was given)."""
        self.address = self.membership.address = address

    def start(self, registry: StoreRegistry) -> None:
        self.registry = registry
        registry.on_delete.append(self._deleted)
        self.membership.join()
        self.reconcile()
        self._thread = threading.Thread(target=self._run, daemon=True, name="paramstore-replica")
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.reconcile()
            except (BackendError, StoreError) as error:
                _log.warning("replica %s: %s", self.address, error)
            except Exception:  # the loop must outlive any one round's trouble
                _log.exception("replica %s: placement round failed", self.address)

    # ---- the placement round ----------------------------------------------------------------

    def reconcile(self) -> None:
        """One round: take what is placed here and free, hand over what is placed elsewhere."""
        replicas = self.membership.replicas()
        if self.address not in replicas:
            return  # between a lost lease and the next join
        owners = self.membership.owners()
        stores = self.backend.store_names()
        plan = assign(stores, replicas)
        for store in stores:
            if self._stopping.is_set():
                return
            if plan.get(store) == self.address and store not in owners:
                self._take(store)
        for store, owner in owners.items():
            if owner.address != self.address:
                continue
            if store not in self.membership.owned or store not in stores:
                continue
            target = plan.get(store)
            if target is not None and target != self.address:
                self.hand_over(store, NotOwner(f"store {store!r} moved to replica {target}",
                                               target))
        self._drop_lost()

    def _take(self, store: str) -> bool:
        assert self.registry is not None
        with self._moves:
            if not self.membership.take(store):
                return False
            try:
                if not self.registry.adopt(store):
                    self.membership.release(store)  # deleted meanwhile
                    return False
            except BaseException:
                self.membership.release(store)
                raise
            _log.info("replica %s: serving store %s", self.address, store)
            return True

    def hand_over(self, store: str, error: StoreError) -> None:
        """Take a last snapshot of `store`, refusing writes from then on with `error`, and
        release it for the replica it is placed on."""
        assert self.registry is not None
        with self._moves:
            try:
                self.registry.hand_over(store, error)
            except (StoreError, BackendError) as failure:
                _log.error("replica %s: last snapshot of %s before its hand-over failed: %s",
                           self.address, store, failure)
                self.registry.drop(store, error)
            finally:
                self._release(store)
        _log.info("replica %s: handed store %s over", self.address, store)

    def _release(self, store: str) -> None:
        for hook in self.on_release:
            hook(store)
        try:
            self.membership.release(store)
        except BackendError as error:  # the key goes with the lease then
            _log.warning("replica %s: %s", self.address, error)

    def _drop_lost(self) -> None:
        """Stop holding the stores whose owner key is no longer this replica's."""
        assert self.registry is not None
        for held in self.registry.list():
            if held.name not in self.membership.owned:
                self._drop(held.name)

    def _drop(self, store: str) -> None:
        assert self.registry is not None
        self.registry.drop(store, unavailable(store, "moved to another replica"))
        for hook in self.on_release:
            hook(store)

    def _lost(self) -> None:
        assert self.registry is not None
        for held in self.registry.list():
            self._drop(held.name)

    def _deleted(self, store: str) -> None:
        self.membership.release(store)

    # ---- the registry's Ownership ---------------------------------------------------------------

    def claim(self, name: str) -> None:
        assert self.registry is not None
        if self.registry.exists(name):
            return
        with _unavailable_without_etcd():
            self._claim(name)

    def _claim(self, name: str) -> None:
        assert self.registry is not None
        owner = self.membership.owner(name)
        if owner is not None and name not in self.membership.owned:
            if owner.address != self.address:
                raise NotOwner(f"store {name!r} is served by replica {owner.address}",
                               owner.address)
            raise unavailable(name, "is being taken back from this replica's previous run")
        if owner is None:
            replicas = self.membership.replicas()
            target = assign({*self.backend.store_names(), name}, replicas).get(name)
            if target is not None and target != self.address:
                raise NotOwner(f"store {name!r} belongs on replica {target}", target)
        with self._moves:
            if owner is None and not self.membership.take(name):
                raise unavailable(name, "is being taken by another replica")
            try:
                self.registry.adopt(name)
            except BaseException:
                self.membership.release(name)
                raise

    def refuse(self, name: str) -> None:
        with _unavailable_without_etcd():
            self._refuse(name)

    def view(self) -> tuple[dict[str, list[str]], list[str]]:
        """Each live replica's address and the stores it owns, and the stores that exist but
        have no owner at this moment (being handed over, or their owner died)."""
        with _unavailable_without_etcd():
            view: dict[str, list[str]] = {address: [] for address in self.membership.replicas()}
            owners = self.membership.owners()
            for store, owner in sorted(owners.items()):
                view.setdefault(owner.address, []).append(store)
            # Read after the owners: a store that had none then is listed here, so every
            # store appears somewhere even while it moves.
            unowned = [store for store in self.backend.store_names() if store not in owners]
            return view, unowned

    def _refuse(self, name: str) -> None:
        owner = self.membership.owner(name)
        if owner is not None and owner.address != self.address:
            raise NotOwner(f"store {name!r} is served by replica {owner.address}",
                           owner.address)
        if name not in self.backend.store_names():
            raise StoreNotFound(f"no store named {name!r}")
        if owner is not None:
            raise unavailable(name, "is being loaded")
        raise unavailable(name, "has no replica yet (its owner died or is handing it over)")

    # ---- leaving ----------------------------------------------------------------------------

    def close(self) -> None:
        """Hand every store over (a last snapshot each) and leave the cluster."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.membership.withdraw()
        if self.registry is not None:
            for held in self.registry.list():
                self.hand_over(held.name, unavailable(held.name, "is moving to another "
                                                                  "replica"))
        self.membership.leave()


@contextlib.contextmanager
def _unavailable_without_etcd() -> Iterator[None]:
    try:
        yield
    except BackendError as error:
        raise StorageUnavailable(f"the cluster's coordinator is unreachable: {error}") from None
