"""A replica's standing in the cluster, kept in etcd: its lease, its registration, the stores
it owns, and the commit records it writes under the fence of that ownership.

etcd keys, under the cluster's prefix:

    replicas/<address>   the replica is alive (bound to its lease)
    owners/<store>       the replica that owns the store (bound to the owner's lease)
    records/<key>        a commit record of the storage catalog (see `records.RecordsBackend`)

A store's owner key is taken in a transaction that finds it absent, so at most one replica
owns a store; it vanishes with its owner's lease. Every write of a record is a transaction
comparing the owner key's create revision with the one this replica took: a replica whose
lease expired (a pause, a partition) and whose store was taken by another cannot commit,
even if it looked at its lease a moment before.

etcd through `pyetcd` (the `etcd-sdk-python` distribution): a maintained fork of python-etcd3
that speaks etcd's own gRPC API with the grpcio and protobuf this project already uses; leases,
transactions and ranges are all a replica needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyetcd
from pyetcd.exceptions import Etcd3Exception

from paramstore.server.errors import StorageUnavailable
from paramstore.server.storage.backend import BackendError
from paramstore.server.storage.steps import LEASE_CHECKED, reached

_log = logging.getLogger("paramstore.server")

DEFAULT_PREFIX = "/paramstore"
DEFAULT_LEASE_TTL = 10.0
ETCD_TIMEOUT_SECONDS = 5.0


class FencedOut(BackendError):
    """This replica does not own the store (any more): the write was refused by etcd."""


@dataclass(frozen=True)
class ClusterConfig:
    """`--cluster etcd://HOST:PORT[,HOST:PORT...][/PREFIX] --advertise HOST:PORT --lease-ttl S`"""

    url: str
    advertise: str
    lease_ttl: float = DEFAULT_LEASE_TTL


@dataclass(frozen=True)
class Owner:
    """Who owns a store: the replica's address and the key's create revision (its fence)."""

    address: str
    revision: int
    lease: int


def parse_url(url: str) -> tuple[list[tuple[str, int]], str]:
    """The etcd endpoints and key prefix of `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`."""
    parts = urlsplit(url)
    if parts.scheme != "etcd" or not parts.netloc:
        raise ValueError(f"--cluster {url!r}: expected etcd://HOST:PORT[/PREFIX]")
    endpoints = []
    for endpoint in parts.netloc.split(","):
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--cluster {url!r}: {endpoint!r} is not HOST:PORT")
        endpoints.append((host, int(port)))
    prefix = "/" + parts.path.strip("/") if parts.path.strip("/") else DEFAULT_PREFIX
    return endpoints, prefix


def open_etcd(url: str) -> tuple[pyetcd.MultiEndpointEtcd3Client, str]:
    """A client of the etcd cluster at `url`, and the key prefix. A failed endpoint is tried
    again at the next request (pyetcd's default waits five minutes)."""
    endpoints, prefix = parse_url(url)
    client = pyetcd.MultiEndpointEtcd3Client(
        endpoints=[pyetcd.Endpoint(host, port, secure=False, time_retry=0.0)
                   for host, port in endpoints],
        timeout=ETCD_TIMEOUT_SECONDS, failover=len(endpoints) > 1)
    return client, prefix


@contextlib.contextmanager
def etcd_errors(action: str) -> Iterator[None]:
    """pyetcd's and gRPC's failures as `BackendError`: the coordinator cannot be reached."""
    try:
        yield
    except (Etcd3Exception, ValueError) as error:
        raise BackendError(f"etcd could not {action}: {error or type(error).__name__}"
                           ) from None
    except Exception as error:
        if type(error).__module__.startswith("grpc"):
            raise BackendError(f"etcd could not {action}: {error}") from None
        raise


class Membership:
    """One replica's lease, registration and owned stores in etcd.

    `on_lost()` is called (from the keep-alive thread) when the lease is gone: every store
    this replica owned is owned no more; it then registers again under a new lease."""

    def __init__(self, config: ClusterConfig, on_lost: Callable[[], None] | None = None
                 ) -> None:
        if config.lease_ttl < 2:
            raise ValueError(f"--lease-ttl must be at least 2 seconds, got {config.lease_ttl}")
        self.config = config
        self.address = config.advertise
        self.etcd, self.prefix = open_etcd(config.url)
        self.ttl = math.ceil(config.lease_ttl)
        self.on_lost = on_lost
        self._lock = threading.Lock()  # guards `owned`, `_lease`, `_valid_until`
        self.owned: dict[str, int] = {}  # store -> create revision of our owner key
        self._lease: Any = None
        self._valid_until = 0.0
        self._stopping = threading.Event()
        self._keeper: threading.Thread | None = None

    # ---- keys ---------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def record_key(self, key: str) -> str:
        return self._key("records", key)

    # ---- the lease ----------------------------------------------------------------------------

    def join(self) -> None:
        """Take a lease and register. A registration of this address under another lease is a
        previous run of this replica: its lease is revoked, which frees its stores at once."""
        with etcd_errors("register the replica"):
            previous, meta = self.etcd.get(self._key("replicas", self.address))
            if previous is not None and meta.lease_id:
                _log.info("replica %s: revoking the lease of its previous run", self.address)
                with contextlib.suppress(Etcd3Exception):
                    self.etcd.revoke_lease(meta.lease_id)
            lease = self.etcd.lease(self.ttl)
            self.etcd.put(self._key("replicas", self.address),
                          json.dumps({"address": self.address, "since": time.time()}),
                          lease=lease)
        with self._lock:
            self._lease = lease
            self._valid_until = time.monotonic() + self.ttl
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep_alive, daemon=True,
                                            name="paramstore-lease")
            self._keeper.start()

    def _keep_alive(self) -> None:
        """Refresh the lease three times per TTL; when it is gone, give up every store and
        join again."""
        while not self._stopping.wait(self.ttl / 3):
            sent = time.monotonic()
            try:
                with etcd_errors("refresh the lease"):
                    replies = self._lease.refresh()
                alive = bool(replies) and replies[0].TTL > 0
            except BackendError as error:
                _log.warning("replica %s: %s", self.address, error)
                alive = time.monotonic() < self._valid_until  # etcd unreachable: wait, locally
                if alive:
                    continue
            if alive:
                with self._lock:
                    self._valid_until = sent + self.ttl
                continue
            if self._stopping.is_set():
                return
            _log.error("replica %s: lease lost; its stores are owned no more", self.address)
            with self._lock:
                self.owned.clear()
                self._valid_until = 0.0
            if self.on_lost is not None:
                self.on_lost()
            try:
                self.join()
            except BackendError as error:
                _log.error("replica %s: could not join again: %s", self.address, error)

    def withdraw(self) -> None:
        """Stop being a candidate owner: the other replicas place stores without this one,
        and take each store it releases."""
        with contextlib.suppress(BackendError), etcd_errors("withdraw the replica"):
            self.etcd.delete(self._key("replicas", self.address))

    def leave(self) -> None:
        """Stop refreshing and revoke the lease: this replica's keys vanish at once."""
        self._stopping.set()
        with self._lock:
            self.owned.clear()
            self._valid_until = 0.0
            lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(Etcd3Exception, ValueError):
                lease.revoke()

    # ---- the cluster's view -------------------------------------------------------------------

    def replicas(self) -> list[str]:
        """The addresses of the live replicas, sorted."""
        with etcd_errors("list the replicas"):
            found = self.etcd.get_prefix(self._key("replicas", ""), keys_only=True)
            return sorted(meta.key.decode().rsplit("/", 1)[1] for _, meta in found)

    def owners(self) -> dict[str, Owner]:
        """Each owned store's owner."""
        with etcd_errors("list the owners"):
            found = self.etcd.get_prefix(self._key("owners", ""))
            return {meta.key.decode().rsplit("/", 1)[1]:
                    Owner(value.decode(), meta.create_revision, meta.lease_id)
                    for value, meta in found}

    def owner(self, store: str) -> Owner | None:
        with etcd_errors("find the owner"):
            value, meta = self.etcd.get(self._key("owners", store))
        return None if value is None else Owner(value.decode(), meta.create_revision,
                                                  meta.lease_id)

    # ---- ownership ----------------------------------------------------------------------------

    def take(self, store: str) -> bool:
        """Own `store` if no replica does: True when this replica now owns it."""
        lease = self._lease
        if lease is None or not self.lease_valid():
            return False
        key = self._key("owners", store)
        tx = self.etcd.transactions
        with etcd_errors("take the store"):
            won, replies = self.etcd.transaction(
                compare=[tx.create(key) == 0],
                success=[tx.put(key, self.address, lease=lease)], failure=[])
        if won:
            with self._lock:
                self.owned[store] = replies[0].response_put.header.revision
            _log.info("replica %s: took store %s", self.address, store)
        return bool(won)

    def release(self, store: str) -> None:
        """Give up `store` (its owner key is deleted if it is still ours)."""
        with self._lock:
            revision = self.owned.pop(store, None)
        if revision is None:
            return
        key = self._key("owners", store)
        tx = self.etcd.transactions
        with etcd_errors("release the store"):
            self.etcd.transaction(compare=[tx.create(key) == revision],
                                  success=[tx.delete(key)], failure=[])
        _log.info("replica %s: released store %s", self.address, store)

    def lease_valid(self) -> bool:
        return time.monotonic() < self._valid_until

    def fence(self, store: str) -> int:
        """The create revision of this replica's owner key of `store`: what a commit compares.
        Raises `FencedOut` when the store is not owned here or the lease has run out."""
        with self._lock:
            revision = self.owned.get(store)
            valid = self.lease_valid()
        if revision is None or not valid:
            raise FencedOut(f"replica {self.address} does not own store {store!r} (any more)")
        return revision

    # ---- records, written under the fence ------------------------------------------------------

    def put_record(self, store: str, key: str, data: bytes) -> bool:
        """Create record `key` if it is absent and this replica still owns `store`, as one
        etcd transaction. False when the record exists; raises `FencedOut` when the store is
        not ours."""
        revision = self.fence(store)
        reached(LEASE_CHECKED)
        owner, record = self._key("owners", store), self.record_key(key)
        tx = self.etcd.transactions
        with etcd_errors("commit"):
            won, replies = self.etcd.transaction(
                compare=[tx.create(owner) == revision, tx.create(record) == 0],
                success=[tx.put(record, data)], failure=[tx.get(owner)])
        if won:
            return True
        if any(meta.create_revision == revision for _, meta in replies[0]):
            return False  # still ours: the record was there
        self._lost(store, revision)
        raise FencedOut(f"replica {self.address} lost store {store!r}: the commit was refused")

    def delete_record(self, store: str, key: str) -> None:
        """Delete record `key` if this replica still owns `store`. Raises `FencedOut`."""
        revision = self.fence(store)
        owner = self._key("owners", store)
        tx = self.etcd.transactions
        with etcd_errors("delete a record"):
            won, _ = self.etcd.transaction(
                compare=[tx.create(owner) == revision],
                success=[tx.delete(self.record_key(key))], failure=[])
        if not won:
            self._lost(store, revision)
            raise FencedOut(f"replica {self.address} lost store {store!r}: the delete was "
                            "refused")

    def _lost(self, store: str, revision: int) -> None:
        with self._lock:
            if self.owned.get(store) == revision:
                del self.owned[store]

    def get_record(self, key: str) -> bytes | None:
        with etcd_errors("read a record"):
            value, _ = self.etcd.get(self.record_key(key))
        return value

    def record_keys(self, prefix: str) -> list[str]:
        """The keys of the records under `prefix` ('' for all), sorted."""
        base = self.record_key(prefix + "/" if prefix else "")
        start = len(self.record_key(""))
        with etcd_errors("list records"):
            found = self.etcd.get_prefix(base, keys_only=True)
            return sorted(meta.key.decode()[start:] for _, meta in found)


def unavailable(store: str, why: str) -> StorageUnavailable:
    return StorageUnavailable(f"store {store!r} {why}; retry (the client does, on another "
                              "replica if need be)")
