"""Retention policies: which of a store's snapshots a policy keeps. Pure functions, no I/O.

A snapshot is kept when any rule keeps it: among the last `keep_last`, among the `keep_best`
by a metric of its metadata (one without a readable metric is never "best"), at a step that is
a multiple of `keep_every_steps`. The newest snapshot and every tagged one are always kept,
and so is every snapshot that a kept delta snapshot is built on.

The rules count the user's snapshots only. A snapshot the server writes for itself (the last
one of a store it hands over to another replica, marked by `HAND_OVER`) is what the store
resumes from while it is the newest; once a newer snapshot exists it is deleted, with or
without a policy, unless it is tagged or a kept delta's base.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from paramstore.server.errors import InvalidArgument

MODES = ("min", "max")
# The metadata of the snapshot a replica writes of a store it hands over.
HAND_OVER = {"paramstore.trigger": "hand-over"}


class Described(Protocol):
    """What retention reads of a snapshot."""

    @property
    def id(self) -> str: ...

    @property
    def step(self) -> int: ...

    @property
    def metadata(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class RetentionPolicy:
    """A store's rules; a rule at 0 (or a metric of "") is off."""

    keep_last: int = 0
    keep_best: int = 0
    metric: str = ""
    mode: str = "min"
    keep_every_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_best", "keep_every_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"{name} must be 0 (off) or a positive count, got {value!r}")
        if self.mode not in MODES:
            raise InvalidArgument(f"mode must be 'min' or 'max', got {self.mode!r}")
        if bool(self.keep_best) != bool(self.metric):
            raise InvalidArgument("keep_best and metric go together: keep_best=K needs the "
                                  "metadata key to rank by, e.g. metric='val_loss'")

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_best or self.keep_every_steps)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RetentionPolicy:
        return cls(int(raw["keep_last"]), int(raw["keep_best"]), str(raw["metric"]),
                   str(raw["mode"]), int(raw["keep_every_steps"]))


def doomed(
    policy: RetentionPolicy,
    snapshots: Sequence[Described],
    protected: Collection[str],
    bases: Mapping[str, str] | None = None,
) -> list[str]:
    """The ids of `snapshots` (oldest first) that `policy` deletes; `protected` ids (tagged)
    are never among them, nor is the newest snapshot, nor the base (`bases`: delta id -> base
    id) of a kept snapshot, or its base's base. The rules count the user's snapshots only; the
    server's own (`HAND_OVER`) are deleted once not the newest."""
    if not snapshots:
        return []
    kept = set(protected) | {snapshots[-1].id}
    users = [info for info in snapshots if not _written_for_a_hand_over(info)]
    if policy.empty:
        kept.update(info.id for info in users)
    if policy.keep_last:
        kept.update(info.id for info in users[-policy.keep_last:])
    if policy.keep_best:
        ranked = [(value, info.id) for info in users
                  if (value := _metric(info, policy.metric)) is not None]
        sign = 1.0 if policy.mode == "min" else -1.0
        # Ties go to the newer snapshot.
        ranked.sort(key=lambda pair: (sign * pair[0], -int(pair[1])))
        kept.update(snapshot_id for _, snapshot_id in ranked[:policy.keep_best])
    if policy.keep_every_steps:
        kept.update(info.id for info in users
                    if info.step >= 0 and info.step % policy.keep_every_steps == 0)
    for snapshot_id in list(kept):
        while (snapshot_id := (bases or {}).get(snapshot_id, "")) and snapshot_id not in kept:
            kept.add(snapshot_id)
    return [info.id for info in snapshots if info.id not in kept]


def _written_for_a_hand_over(info: Described) -> bool:
    return all(info.metadata.get(key) == value for key, value in HAND_OVER.items())


def _metric(info: Described, metric: str) -> float | None:
    try:
        value = float(info.metadata[metric])
    except (KeyError, ValueError):
        return None
    return None if math.isnan(value) else value
