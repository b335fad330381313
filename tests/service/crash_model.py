"""What a client was told about a store, and the check that a restarted server honours it.

Crash tests record every acknowledgement in a `StoreModel` (and the one operation the kill
interrupted); `check` then asserts the durability promises: everything acknowledged is there and
intact, what was in flight is whole or absent, nothing deleted came back, nothing never
acknowledged exists, and the store is back at its newest committed snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from paramstore.client import Client
from paramstore.client.errors import NotFound


@dataclass
class StoreModel:
    """One store as its client saw it. Its tensor "w" holds one value at a time."""

    name: str
    keep: int = 0  # the server's retention
    created: bool = False
    deleted: bool = False
    snapshots: dict[str, float] = field(default_factory=dict)  # acknowledged and kept
    removed: set[str] = field(default_factory=set)  # snapshots whose delete was acknowledged
    in_flight: str = ""  # create, import, snapshot, delete-snapshot, delete, or another write
    in_flight_value: float | None = None  # what a snapshot or import in flight holds
    may_be_gone: set[str] = field(default_factory=set)  # what the operation in flight removes
    tags: dict[str, str] = field(default_factory=dict)  # acknowledged: tag -> snapshot id
    tags_in_flight: set[str] = field(default_factory=set)  # tags the operation may change
    keep_every_steps: int = 0  # of the acknowledged retention policy (0: none set)
    bases: dict[str, str] = field(default_factory=dict)  # delta snapshot id -> its base's id

    def begin(self, operation: str, value: float | None = None, target: str = "",
              tags: tuple[str, ...] = ()) -> None:
        self.in_flight, self.in_flight_value, self.may_be_gone = operation, value, set()
        self.tags_in_flight = set(tags)
        if operation == "snapshot" and self.keep:
            # The new snapshot takes one of the `keep` places; a tag it moves protects no more.
            newest = sorted(self.snapshots)[max(0, len(self.snapshots) + 1 - self.keep):]
            tagged = {tagged for tag, tagged in self.tags.items() if tag not in tags}
            self.may_be_gone = set(self.snapshots) - self._kept(newest, tagged)
        if operation == "delete-snapshot":
            self.may_be_gone = {target}
            self.tags_in_flight = {tag for tag, tagged in self.tags.items() if tagged == target}

    def done(self) -> None:
        self.in_flight, self.in_flight_value, self.may_be_gone = "", None, set()
        self.tags_in_flight = set()

    def tagged(self, tag: str, snapshot_id: str | None) -> None:
        """A tag given to a snapshot (or removed, with None) was acknowledged."""
        if snapshot_id is None:
            self.tags.pop(tag, None)
        else:
            self.tags[tag] = snapshot_id
        self.done()

    def snapshot_taken(self, snapshot_id: str, value: float, base: str = "") -> None:
        """A snapshot (a delta one on `base`) was acknowledged; retention then kept the
        newest `keep`, the tagged ones and the bases the kept ones are built on."""
        self.snapshots[snapshot_id] = value
        if base:
            self.bases[snapshot_id] = base
        if self.keep:
            kept = self._kept(sorted(self.snapshots)[-self.keep:], set(self.tags.values()))
            for old in set(self.snapshots) - kept:
                del self.snapshots[old]
        self.done()

    def _kept(self, newest: list[str], tagged: set[str]) -> set[str]:
        """What retention keeps: `newest`, `tagged`, and the bases these are built on."""
        kept = set(newest) | tagged
        for kept_id in list(kept):
            while (kept_id := self.bases.get(kept_id, "")) and kept_id not in kept:
                kept.add(kept_id)
        return kept

    def deletable(self) -> list[str]:
        """The snapshots a delete may remove: those no kept delta snapshot is built on."""
        needed = {self.bases.get(snapshot_id) for snapshot_id in self.snapshots}
        return sorted(set(self.snapshots) - needed)

    def snapshot_deleted(self, snapshot_id: str) -> None:
        self.snapshots.pop(snapshot_id, None)
        self.removed.add(snapshot_id)
        self.tags = {tag: tagged for tag, tagged in self.tags.items() if tagged != snapshot_id}
        self.done()


def value_of(client: Client, store: str) -> float | None:
    """The value store's "w" holds, or None when it has no "w"."""
    params = client.store(store).collect_params()
    if "w" not in params:
        return None
    values = np.unique(params["w"].data().asnumpy())
    assert len(values) == 1, f"store {store!r} mixes writes: {values}"
    return float(values[0])


def check(client: Client, model: StoreModel, listed_stores: list[str]) -> None:
    """Assert that the restarted server keeps every promise made about `model`'s store."""
    name, present = model.name, model.name in listed_stores
    if model.deleted or (model.in_flight == "delete" and not present):
        assert not present, f"store {name!r}, whose delete was acknowledged, came back"
        with pytest.raises(NotFound):
            client.store(name).snapshots()
        return
    if not model.created:
        if present:  # committed, and the kill cut off the reply
            assert model.in_flight in ("create", "import"), f"{name!r} was never created"
            expected = {"00000001": model.in_flight_value} if model.in_flight == "import" else {}
            assert {info.id: value for info, value in _restored(client, name)} == expected
        return
    assert present, f"store {name!r}, acknowledged, was lost"
    listed = [info.id for info in client.store(name).snapshots()]
    lost = set(model.snapshots) - model.may_be_gone - set(listed)
    assert not lost, f"acknowledged snapshots of {name!r} were lost: {sorted(lost)}"
    assert not model.removed & set(listed), f"deleted snapshots of {name!r} came back"
    unexpected = set(listed) - set(model.snapshots)
    if unexpected:  # only the one whose reply the kill cut off
        assert model.in_flight == "snapshot" and len(unexpected) == 1, (name, unexpected)
    newest = max(listed, default=None)
    known = {**model.snapshots, **dict.fromkeys(unexpected, model.in_flight_value)}
    assert value_of(client, name) == (known[newest] if newest else None), \
        f"store {name!r} is not at its newest snapshot {newest}"
    for info, value in _restored(client, name):
        assert value == known[info.id], f"snapshot {info.id} of {name!r} is not what it held"
    _check_settings(client, model)


def _check_settings(client: Client, model: StoreModel) -> None:
    """Acknowledged tags and retention policy are there; a tag in flight is old or new."""
    store = client.store(model.name)
    tags = {tag: info.id for info in store.snapshots() for tag in info.tags}
    for tag, snapshot_id in model.tags.items():
        if tag not in model.tags_in_flight:
            assert tags.get(tag) == snapshot_id, f"tag {tag!r} of {model.name!r} was lost"
    never_given = set(tags) - set(model.tags) - model.tags_in_flight
    assert not never_given, f"tags of {model.name!r} that were never given: {never_given}"
    policy = store.retention()
    if model.keep_every_steps:
        assert policy.keep_every_steps == model.keep_every_steps and not policy.server_default
    elif model.in_flight != "retention-policy":
        assert policy.server_default, f"{model.name!r} has a policy never acknowledged"


def _restored(client: Client, name: str):
    """Each listed snapshot, restored, with the value it brought back."""
    store = client.store(name)
    for info in store.snapshots():
        store.restore(info.id)
        yield info, value_of(client, name)
