"""Retention policies as pure rules: which snapshots each rule keeps."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from paramstore.server.errors import InvalidArgument
from paramstore.server.storage import RetentionPolicy
from paramstore.server.storage.retention import HAND_OVER, doomed


@dataclass
class Info:
    id: str
    step: int = -1
    metadata: dict[str, str] = field(default_factory=dict)


def history(*losses: str | None) -> list[Info]:
    """Snapshots 1.. at steps 100, 200, ..., with a val_loss where one is given."""
    return [Info(f"{index:08d}", index * 100, {} if loss is None else {"val_loss": loss})
            for index, loss in enumerate(losses, start=1)]


def kept(policy: RetentionPolicy, infos: list[Info], protected: frozenset[str] = frozenset()
         ) -> list[int]:
    gone = set(doomed(policy, infos, protected))
    return [int(info.id) for info in infos if info.id not in gone]


def test_keep_last_keeps_the_newest():
    assert kept(RetentionPolicy(keep_last=2), history(*"12345")) == [4, 5]


def test_keep_best_keeps_the_lowest_metric_and_the_newest():
    infos = history("0.5", "0.1", "0.9", "0.2", "0.7")
    assert kept(RetentionPolicy(keep_best=2, metric="val_loss"), infos) == [2, 4, 5]


def test_keep_best_in_max_mode_keeps_the_highest():
    infos = history("0.5", "0.1", "0.9", "0.2", "0.7")
    policy = RetentionPolicy(keep_best=1, metric="val_loss", mode="max")
    assert kept(policy, infos) == [3, 5]


def test_a_snapshot_without_the_metric_is_never_best():
    infos = history(None, "oops", "nan", "0.3", None)
    assert kept(RetentionPolicy(keep_best=3, metric="val_loss"), infos) == [4, 5]


def test_keep_every_steps_keeps_multiples_of_the_period():
    assert kept(RetentionPolicy(keep_every_steps=200), history(*"12345")) == [2, 4, 5]


def test_a_snapshot_is_kept_when_any_rule_keeps_it():
    infos = history("0.1", "0.9", "0.9", "0.9", "0.9", "0.9")
    policy = RetentionPolicy(keep_last=1, keep_best=1, metric="val_loss", keep_every_steps=300)
    assert kept(policy, infos) == [1, 3, 6]


def test_tagged_snapshots_are_never_deleted():
    assert kept(RetentionPolicy(keep_last=1), history(*"1234"), frozenset({"00000002"})) == [2, 4]


def test_the_bases_of_a_kept_delta_are_kept():
    bases = {"00000004": "00000003", "00000003": "00000001"}
    gone = doomed(RetentionPolicy(keep_last=1), history(*"1234"), frozenset(), bases)
    assert gone == ["00000002"]


def test_a_policy_without_rules_keeps_everything():
    assert kept(RetentionPolicy(), history(*"123")) == [1, 2, 3]


@pytest.mark.parametrize("options", [
    {"keep_last": -1}, {"keep_best": 2}, {"metric": "val_loss"},
    {"keep_best": 1, "metric": "val_loss", "mode": "lowest"},
])
def test_a_bad_policy_is_refused(options):
    with pytest.raises(InvalidArgument):
        RetentionPolicy(**options)


def handed_over(*infos: Info) -> list[Info]:
    """`infos` with a snapshot written for a hand-over after each."""
    taken = []
    for info in infos:
        taken += [info, Info(f"{len(taken) + 1:08d}", -1, dict(HAND_OVER))]
    return [Info(f"{index:08d}", each.step, each.metadata)
            for index, each in enumerate(taken, start=1)]


def test_hand_over_snapshots_do_not_count_against_keep_last():
    infos = handed_over(*history(*"123"))  # user, hand-over, user, hand-over, user, hand-over
    assert kept(RetentionPolicy(keep_last=2), infos) == [3, 5, 6]


def test_only_the_newest_hand_over_snapshot_is_kept_and_only_while_it_is_the_newest():
    infos = handed_over(*history(*"12"))
    assert kept(RetentionPolicy(), infos) == [1, 3, 4]
    assert kept(RetentionPolicy(), infos[:-1]) == [1, 3]


def test_a_tagged_hand_over_snapshot_is_kept():
    infos = handed_over(*history(*"12"))
    assert kept(RetentionPolicy(keep_last=1), infos, frozenset({"00000002"})) == [2, 3, 4]
