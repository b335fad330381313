"""Who should own which store: rendezvous hashing over the live replicas, with bounded load.

Plain rendezvous (highest random weight) hashing moves only the stores of a replica that
joins or leaves, but for a few hundred stores over a few replicas it leaves some replicas with
a third more than others. Bounding each replica's load at `(1 + SLACK)` times the mean, and
placing stores in a fixed order, each at the highest-scoring replica with room, keeps every
replica within `SLACK * (replicas - 1)` of the mean (plus rounding) for any store names, while
a join or a leave still moves few stores.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

SLACK = 0.05


def score(store: str, replica: str) -> int:
    """The rendezvous weight of `replica` for `store`: a stable hash of the pair."""
    digest = hashlib.blake2b(f"{store}\0{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(stores: Iterable[str], replicas: Iterable[str], slack: float = SLACK
           ) -> dict[str, str]:
    """Each store's replica. Every replica gets at most `ceil((1 + slack) * mean)` stores.
    Deterministic: every replica computes the same answer from the same lists."""
    names = sorted(set(stores))
    members = sorted(set(replicas))
    if not members:
        return {}
    capacity = max(1, math.ceil((1 + slack) * len(names) / len(members)))
    load = dict.fromkeys(members, 0)
    owners: dict[str, str] = {}
    for store in names:
        ranked = sorted(members, key=lambda replica: score(store, replica), reverse=True)
        chosen = next(replica for replica in ranked if load[replica] < capacity)
        owners[store] = chosen
        load[chosen] += 1
    return owners


def loads(owners: Mapping[str, str], replicas: Iterable[str]) -> dict[str, int]:
    """How many stores each replica gets."""
    counts = dict.fromkeys(replicas, 0)
    for replica in owners.values():
        counts[replica] = counts.get(replica, 0) + 1
    return counts
