"""The storage backend of a replica: commit records in etcd, data in shared object storage.

The catalog's commit protocol stays as it is; only where its two kinds of object live changes.
Data objects (`stores/<store>/<incarnation>/data/...`, written once under unique names) go to
the object storage every replica reads. Commit records (`created`, `deleted`, snapshot records,
tags, retention) are etcd keys, and creating or deleting one is an etcd transaction that also
compares the store's owner key: the commit carries the fence. A replica that lost a store can
still upload data, which no record will ever name (the next owner removes it), but it can never
commit, whatever it believed about its lease a moment before.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from paramstore import checkpoint
from paramstore.server.cluster.membership import Membership
from paramstore.server.storage.backend import Backend, checked_key


def _is_data(key: str) -> bool:
    parts = key.split("/")
    return len(parts) > 3 and parts[3] == "data"


def _store_of(key: str) -> str:
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "stores":
        raise ValueError(f"storage key {key!r} belongs to no store")
    return parts[1]


class RecordsBackend(Backend):
    """Records in etcd under `membership`'s fence; everything else in `data`."""

    def __init__(self, data: Backend, membership: Membership) -> None:
        self.data = data
        self.membership = membership

    def write(self, key: str, produce: Callable[[str], None]) -> int:
        return self.data.write(key, produce)

    def write_checkpoint(self, key: str, planned: checkpoint.Planned) -> None:
        self.data.write_checkpoint(key, planned)

    def create(self, key: str, data: bytes) -> bool:
        checked_key(key)
        if _is_data(key):
            return self.data.create(key, data)
        return self.membership.put_record(_store_of(key), key, data)

    def read(self, key: str) -> bytes:
        checked_key(key)
        if _is_data(key):
            return self.data.read(key)
        value = self.membership.get_record(key)
        if value is None:
            raise FileNotFoundError(f"no record {self.location(key)}")
        return value

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self.data.read_range(key, start, length)

    def local_file(self, key: str) -> AbstractContextManager[str]:
        return self.data.local_file(key)

    def open_checkpoint(
        self,
        key: str,
        checksums: Mapping[str, int] | None = None,
        select: Callable[[str], bool] | None = None,
    ) -> checkpoint.Checkpoint:
        return self.data.open_checkpoint(key, checksums, select)

    def list(self, prefix: str) -> builtins.list[str]:
        return sorted({*self.membership.record_keys(prefix), *self.data.list(prefix)})

    def folders(self, prefix: str) -> builtins.list[str]:
        depth = prefix.count("/") + 1 if prefix else 0
        from_records = {key.split("/")[depth] for key in self.membership.record_keys(prefix)
                        if key.count("/") > depth}
        return sorted(from_records | set(self.data.folders(prefix)))

    def delete(self, key: str) -> None:
        checked_key(key)
        if _is_data(key):
            self.data.delete(key)
        else:
            self.membership.delete_record(_store_of(key), key)

    def remove_partial_writes(self, prefix: str) -> None:
        self.data.remove_partial_writes(prefix)

    def location(self, key: str = "") -> str:
        if not key or _is_data(key):
            return self.data.location(key)
        return f"etcd:{self.membership.record_key(key)}"

    def store_names(self) -> builtins.list[str]:
        """The stores with a live incarnation: a `created` record and no `deleted` one."""
        keys = self.membership.record_keys("stores")
        created = {key.rsplit("/", 1)[0] for key in keys if key.endswith("/created")}
        deleted = {key.rsplit("/", 1)[0] for key in keys if key.endswith("/deleted")}
        return sorted({prefix.split("/")[1] for prefix in created - deleted})
