"""A replica's backend (`RecordsBackend`: records in etcd, data in the bucket) answers every
storage verb itself: a verb left to `Backend`'s default would take the default's slow path
(a local spool file) instead of the data backend's own."""

from __future__ import annotations

import inspect

from paramstore.server.cluster.records import RecordsBackend
from paramstore.server.storage.backend import Backend


def test_every_backend_verb_is_answered_by_the_replica_backend_itself() -> None:
    verbs = {name for name, member in inspect.getmembers(Backend, inspect.isfunction)
             if not name.startswith("_")}
    assert {"write", "write_checkpoint", "open_checkpoint", "create"} <= verbs
    missing = sorted(verb for verb in verbs if verb not in vars(RecordsBackend))
    assert missing == []
