"""Distributed training on a store: worker ranks, per-step gradient aggregation, the optimizer.

Workers join a store's training session and get a rank. Each `push_pull` hands in gradients:
in sync mode the session waits until every rank pushed a key for the current step, sums the
gradients (in rank order, so every run adds alike), applies the optimizer once and answers every
worker with the same new weight; in async mode each push is applied on arrival. A step that
misses workers for longer than the timeout is aborted for everyone waiting, with a message
naming the missing ranks, and those ranks are freed for a restarted worker to take. A join
also gives the worker a worker_id, which its calls of the rank carry: a worker whose rank lapsed
and went to another can no longer act in its name.

The optimizer is rebuilt from its `dumps()` JSON only. It belongs to the store (`Store.optimizer`),
so every snapshot of the store commits the optimizer state with the weights, a restore brings
both back, and a server restarted on the same data resumes training exactly. `snapshot_every`
steps, a snapshot is captured at the step's end and written off the training path.

A worker numbers its steps from 1 when it takes a rank, and goes on numbering when it joins
again under the same rank (after a move of the store, or a restart of its server). The store
records, with each update, the rank's step and the keys that step has updated so far
(`Store.steps`), and every snapshot commits that record with the weights. So a step sent
again, its answer lost, is applied once: on this server, on the replica the store was handed
to, or on a server restarted from a snapshot that holds the step, each key the step already
updated is answered with its value, and only the others are applied. A step that skips ahead
of the record was lost with a server that stopped before committing it: the worker is told so,
rather than training on from other weights than its own.
"""

from __future__ import annotations

import copy
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from paramstore import optimizer as opt
from paramstore.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotTraining,
    ShuttingDown,
    StoreError,
)
from paramstore.server.registry import StoreRegistry
from paramstore.server.storage import PendingSnapshot
from paramstore.server.storage.codec import NO_STEP
from paramstore.server.stores import Incoming, StoreState

_log = logging.getLogger("paramstore.server")

MODES = ("sync", "async")
DEFAULT_WORKER_TIMEOUT = 60.0
DEFAULT_WORKER_LEASE = 10.0  # seconds a rank is kept without a heartbeat or a training call
MAX_WORKERS = 4096
MAX_TIMEOUT = 86400.0  # a day: longer is a mistake, not a plan
_BARRIER_KEY = "\0barrier"  # not a valid parameter name: cannot clash with a key


class TrainingAborted(StoreError):
    """A step could not complete: workers were missing after the timeout (gRPC ABORTED)."""


@dataclass
class _Round:
    """One key's step in sync mode: the contributions so far, then the outcome."""

    started: float
    contributions: dict[int, np.ndarray | None] = field(default_factory=dict)
    result: np.ndarray | None = None
    done: bool = False
    error: str | None = None
    failure: StoreError | None = None  # why completing the round failed


@dataclass
class _Step:
    """A worker's last numbered step: the value each of its keys (stored names) got, kept so
    that the step sent again (its answer lost) is answered without counting twice. A key
    applied by the server that held the store before has no value here (None): its current
    value is the answer."""

    number: int
    values: dict[str, np.ndarray | None] = field(default_factory=dict)
    busy: bool = True  # an attempt is running: a repeat waits for it


class TrainingSession:
    """The training of one store: its ranks, pending steps and optimizer."""

    def __init__(
        self,
        registry: StoreRegistry,
        store: str,
        mode: str,
        num_workers: int,
        timeout: float,
        snapshot_every: int,
        snapshots: ThreadPoolExecutor,
        lease: float = DEFAULT_WORKER_LEASE,
    ) -> None:
        self.registry = registry
        self.store = store
        self.mode = mode
        self.num_workers = num_workers
        self.timeout = timeout
        self.lease = lease
        self._renewed: dict[int, float] = {}  # rank -> when it last showed it is alive
        self._ended: str | None = None
        self._moved = False
        self.snapshot_every = snapshot_every
        self._snapshots = snapshots
        self._cond = threading.Condition()
        self._live: set[int] = set()
        self._workers: dict[int, int] = {}  # live rank -> the worker_id of its join
        self._stepped_by: dict[int, int] = {}  # rank -> the worker_id its last steps are of
        self._joined_at: dict[int, float] = {}
        self._rounds: dict[str, _Round] = {}
        self._updates: dict[str, int] = {}  # applied updates per key
        self._store = registry.get(store)
        # rank -> its last numbered step; those the store committed come with it from storage
        self._last_steps = {rank: _Step(step.number, dict.fromkeys(step.keys), busy=False)
                            for rank, step in self._store.steps().items()}
        self._stepping: dict[int, _Step] = {}  # rank -> the step its call is applying
        # Steps every key has had: counted on from the step the store resumed at.
        self._resumed = self.step = self._resumed_step()

    @property
    def optimizer(self) -> opt.Optimizer | None:
        return self._store.optimizer

    @optimizer.setter
    def optimizer(self, optimizer: opt.Optimizer | None) -> None:
        self._store.optimizer = optimizer

    # ---- workers -----------------------------------------------------------------------------

    def join(self, wanted: int | None = None, previous: int = 0) -> tuple[int, int]:
        """A rank for a new worker and its worker_id (new at each join, which the worker's
        calls of the rank carry): `wanted` when it is free (a worker rejoining after a
        failover keeps its rank, and its step numbers unless another worker than that of
        worker_id `previous` held the rank since), else the lowest one no live worker holds.
        When every rank is held, waits up to one lease for a dead worker's rank to lapse.

        Raises `FailedPrecondition` when every rank is still held then."""
        deadline = time.monotonic() + self.lease + 1.0
        with self._cond:
            while True:
                self._check_open()
                self._expire()
                free = sorted(set(range(self.num_workers)) - self._live)
                if free:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FailedPrecondition(
                        f"store {self.store!r} trains with {self.num_workers} workers and every "
                        "rank is held by a live worker (one that sent a heartbeat within "
                        f"{self.lease:g} s)"
                    )
                self._cond.wait(min(remaining, 0.25))
            rank = wanted if wanted in free else free[0]
            self._live.add(rank)
            again = not previous or self._stepped_by.get(rank, previous) == previous
            if rank == wanted and again:  # the same worker: its steps go on from its last one
                self._last_steps.setdefault(rank, _Step(0, busy=False))
            else:  # a new worker numbers its steps from 1
                self._last_steps.pop(rank, None)
                self._store.forget_steps(rank)
            self._joined_at[rank] = self._renewed[rank] = time.monotonic()
            worker = self._workers[rank] = self._stepped_by[rank] = secrets.randbits(63) + 1
            return rank, worker

    def leave(self, rank: int, worker: int = 0) -> None:
        """Give `rank` back, unless `worker` (its worker_id; 0: any) no longer holds it.
        Raises `InvalidArgument` for a rank outside the session."""
        with self._cond:
            self._check_range(rank)
            if worker and worker != self._workers.get(rank):
                return  # a worker whose rank lapsed and went to another: it is not ours to free
            self._depart(rank)
            self._cond.notify_all()

    def heartbeat(self, rank: int, worker: int = 0) -> None:
        """Keep `rank` for another lease. Raises `InvalidArgument`, `FailedPrecondition`
        (the rank lapsed or was never joined, or is another worker's than `worker`'s: join
        again)."""
        with self._cond:
            self._renew(rank, worker)

    def end(self, reason: str, moved: bool = False) -> None:
        """End the session: every waiting and later call fails. When its store `moved` to
        another replica, a worker waiting in a round is told to join again (`NotTraining`) and
        repeats its step there; else (the store was deleted) the round is aborted."""
        with self._cond:
            self._ended = reason
            self._moved = moved
            for current in self._rounds.values():
                current.error = current.error or reason
            self._rounds.clear()
            self._live.clear()
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._ended is not None:
            raise NotTraining(self._ended)

    def _check_range(self, rank: int) -> None:
        if not 0 <= rank < self.num_workers:
            raise InvalidArgument(
                f"rank {rank} is outside store {self.store!r}'s session of {self.num_workers} "
                f"workers (ranks 0 to {self.num_workers - 1})"
            )

    def _renew(self, rank: int, worker: int = 0) -> None:
        """Check that `rank` is a live worker's (that of `worker`, its worker_id, unless 0) and
        keep it for another lease (under the condition's lock)."""
        self._check_open()
        self._store.check_open()  # a store being handed over: UNAVAILABLE, the client retries
        self._check_range(rank)
        self._expire()
        if rank not in self._live:  # its worker joins again, as when the session is new
            raise NotTraining(
                f"rank {rank} is not a live worker of store {self.store!r} (it left, or sent "
                f"no heartbeat for {self.lease:g} s): join again"
            )
        if worker and worker != self._workers.get(rank):
            raise NotTraining(
                f"rank {rank} of store {self.store!r} is another worker's now: this one sent no "
                f"heartbeat for {self.lease:g} s and its rank went to a worker that joined; "
                "join again"
            )
        self._renewed[rank] = time.monotonic()

    def _expire(self) -> None:
        """Free the ranks whose workers showed no sign of life for a lease."""
        lapsed = time.monotonic() - self.lease
        for rank in [rank for rank in self._live if self._renewed.get(rank, 0.0) < lapsed]:
            _log.warning("store %s: rank %d freed: no heartbeat for %g s", self.store, rank,
                         self.lease)
            self._depart(rank)

    def _depart(self, rank: int) -> None:
        """Free `rank` (under the condition's lock). Its last step keeps its number and keys
        but not their values, which a departed worker would hold in memory for good: a repeat
        of it is answered with the keys' current values, as after a move of the store."""
        self._live.discard(rank)
        self._renewed.pop(rank, None)
        self._workers.pop(rank, None)
        last = self._last_steps.get(rank)
        if last is not None and not last.busy:
            last.values = dict.fromkeys(last.values)

    # ---- the optimizer -----------------------------------------------------------------------

    def set_optimizer(self, text: str) -> None:
        """Use the optimizer of `text` (its JSON); one of the same kind keeps the state.

        Raises `InvalidArgument` for JSON that builds no registered optimizer."""
        try:
            rebuilt = opt.create_from_json(text)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"cannot build the optimizer: {error}") from None
        with self._cond:
            if self.optimizer is not None and type(self.optimizer) is type(rebuilt):
                try:
                    rebuilt.set_states(self.optimizer.get_states())
                except ValueError as error:  # other settings keep other state (momentum or none)
                    _log.info("store %s: the new optimizer starts without state: %s",
                              self.store, error)
            self.optimizer = rebuilt

    # ---- keys --------------------------------------------------------------------------------

    def init_keys(self, prefix: str, items: list[Incoming]) -> StoreState:
        """Add the keys the store lacks; keys it holds keep their value (first init wins)."""
        store = self.registry.get(self.store)
        with self._cond:
            state = store.state()
            new = [item for item in items if state.array(item.info.name) is None]
            return store.push(state.prefix or prefix, new) if new else state

    def push_pull(self, rank: int, items: Iterable[Incoming], step: int = 0, worker: int = 0
                  ) -> list[tuple[str, np.ndarray]]:
        """Hand in gradients from `rank` (the worker of worker_id `worker`, unless 0) for its
        step number `step` (0: unnumbered); the new
        value of each key, in order. A repeat of the rank's last step applies none of the keys
        it applied already (on this server or the one that held the store before): it
        answers with the values they got.

        Raises `FailedPrecondition` (rank not joined, shape or dtype differs, no data, a step
        that does not follow the rank's last one), `ParameterNotFound`, `TrainingAborted`
        (sync step missing workers after the timeout)."""
        with self._cond:
            self._renew(rank, worker)
            record = self._claim(rank, step)
            self._stepping[rank] = record
        try:
            items = list(items)  # a repeat still reads every item: the stream stays in step
            checked = [(item.info.name, *self._checked(item)) for item in items]
            # A repeat applies only the keys its first attempt did not (here, or on the server
            # that held the store before: those have no value in the record, None).
            new = [entry for entry in checked if entry[1] not in record.values]
            pushed = self._push_keys(rank, new) if new else {}
            with self._cond:
                self._count()
            return [(name, pushed[name] if name in pushed else self._answer(record, key))
                    for name, key, _ in checked]
        finally:
            with self._cond:
                record.busy = False
                if self._stepping.get(rank) is record:
                    del self._stepping[rank]
                self._cond.notify_all()

    def _claim(self, rank: int, step: int) -> _Step:
        """The record of `rank`'s step `step`, once no other attempt at it runs (under the
        condition's lock). Raises `FailedPrecondition` for a step that neither repeats nor
        follows the rank's last one."""
        last = self._last_steps.get(rank)
        if step == 0:
            return _Step(0)
        if last is None or step == last.number + 1:
            record = self._last_steps[rank] = _Step(step)
            return record
        if step != last.number:
            raise FailedPrecondition(self._out_of_step(rank, step, last.number))
        # The first attempt may still wait in its round (its caller gone): its outcome is ours.
        while last.busy:
            self._check_open()
            self._cond.wait(0.25)
        last.busy = True
        return last

    def _push_keys(self, rank: int, checked: list[tuple[str, str, np.ndarray]]
                   ) -> dict[str, np.ndarray]:
        """The new value of each name of `checked` (name, key, gradient) after `rank`'s
        gradients. In sync mode the keys of a step are handed in together: a worker waits once
        for all of them, and the worker completing the step's rounds updates their keys in one
        store write. Names of one stored tensor (a tie) go in successive rounds, as separate
        pushes would."""
        values: dict[str, np.ndarray | None] = {}
        for batch in _one_name_per_key(checked):
            keys = [(key, gradient) for _, key, gradient in batch]
            if self.mode == "sync":
                outcome = self._gather(keys, rank, self._apply)
            else:
                with self._cond:
                    outcome = self._apply([(key, {rank: gradient}) for key, gradient in keys])
            values.update((name, outcome[key]) for name, key, _ in batch)
        for name, value in values.items():
            if value is None:  # every round of a key ends with its updated value
                raise FailedPrecondition(f"key {name!r} has no value after its step")
        return cast(dict[str, np.ndarray], values)

    def _out_of_step(self, rank: int, step: int, last: int) -> str:
        said = (f"rank {rank} sent its step {step}, but store {self.store!r} last applied its "
                f"step {last}")
        if step < last:
            return f"{said}: a step sent again must be the rank's last one"
        return (f"{said}: the steps after it were lost, applied by a server that stopped "
                "before committing them, and the store resumed from its last snapshot; "
                "restore a snapshot and start the workers again from its step")

    def _answer(self, record: _Step, key: str) -> np.ndarray:
        """The value `key` got in the step of `record`: its current one when the server that
        held the store before applied it."""
        value = record.values[key]
        if value is None:
            value = self._store.state().array(key)
        if value is None:
            raise FailedPrecondition(f"key {key!r} has no value")
        return value

    def barrier(self, rank: int, worker: int = 0) -> None:
        """Wait until every rank reached the barrier. Raises `TrainingAborted`,
        `InvalidArgument` or `FailedPrecondition` for a rank that is not a live worker's
        (`worker`'s, unless 0)."""
        with self._cond:
            self._renew(rank, worker)
        self._gather([(_BARRIER_KEY, None)], rank,
                     lambda rounds: {key: None for key, _ in rounds})

    def _checked(self, item: Incoming) -> tuple[str, np.ndarray]:
        state = self.registry.get(self.store).state()
        info = state.info(item.info.name)
        stored = state.array(item.info.name)
        if item.data is None or stored is None:
            raise FailedPrecondition(
                f"key {item.info.name!r} needs a gradient and an initialized value"
            )
        if item.data.shape != stored.shape or item.data.dtype != stored.dtype:
            raise FailedPrecondition(
                f"gradient of {item.info.name!r} is {item.data.dtype}{list(item.data.shape)}, "
                f"the key is {stored.dtype}{list(stored.shape)}"
            )
        return info.alias_of or info.name, item.data

    # ---- one step ----------------------------------------------------------------------------

    def _gather(
        self,
        keys: Sequence[tuple[str, np.ndarray | None]],
        rank: int,
        complete: Callable[[list[tuple[str, dict[int, np.ndarray | None]]]],
                           dict[str, np.ndarray | None]],
    ) -> dict[str, np.ndarray | None]:
        """Add `rank`'s value of each of `keys` (distinct) to the key's open round, run
        `complete` once on the rounds this contribution completes (every rank is in), and give
        each caller the outcome of every key. A rank ahead of the others waits for the next
        round. A rank whose step fails withdraws from the rounds still open."""
        with self._cond:
            rounds: list[tuple[str, _Round]] = []
            try:
                for key, value in keys:
                    rounds.append((key, self._contribute(key, rank, value)))
                completed = [(key, current) for key, current in rounds
                             if len(current.contributions) == self.num_workers]
                for key, _ in completed:
                    del self._rounds[key]
                if completed:
                    self._complete(completed, complete)
                for key, current in rounds:
                    while not current.done and current.error is None:
                        self._wait(key, current)
                    if current.failure is not None:
                        raise copy.copy(current.failure)  # each waiter fails alike, its own error
                    if current.error is not None and self._moved:
                        raise NotTraining(current.error)  # the worker joins the new owner
                    if current.error is not None:
                        raise TrainingAborted(current.error)
            except BaseException:
                self._withdraw(rank, rounds)
                raise
            return {key: current.result for key, current in rounds}

    def _contribute(self, key: str, rank: int, value: np.ndarray | None) -> _Round:
        """Put `rank`'s `value` in `key`'s open round (a new one when none is open, or after
        the one `rank` is already in completes) and return the round."""
        while True:
            current = self._rounds.get(key)
            if current is None:
                current = self._rounds[key] = _Round(started=time.monotonic())
            if rank not in current.contributions:
                current.contributions[rank] = value
                return current
            self._wait(key, current)

    def _complete(
        self, completed: list[tuple[str, _Round]],
        complete: Callable[[list[tuple[str, dict[int, np.ndarray | None]]]],
                           dict[str, np.ndarray | None]],
    ) -> None:
        """Run `complete` on the `completed` rounds (out of `_rounds` already) and tell their
        waiters the outcome."""
        try:
            results = complete([(key, current.contributions) for key, current in completed])
            for key, current in completed:
                current.result = results[key]
        except StoreError as failure:  # as a store handed over: nothing was applied
            for _, current in completed:
                current.failure = failure
        finally:
            for _, current in completed:
                current.done = True
            self._cond.notify_all()

    def _withdraw(self, rank: int, rounds: list[tuple[str, _Round]]) -> None:
        """Take `rank`'s values out of those `rounds` that are still open: a failed step
        leaves nothing behind for a later round to add."""
        for key, current in rounds:
            if current.done or current.error is not None or self._rounds.get(key) is not current:
                continue
            current.contributions.pop(rank, None)
            if not current.contributions:
                del self._rounds[key]

    def _wait(self, key: str, current: _Round) -> None:
        """Wait for `current` to change; past its deadline, abort it for every waiter."""
        remaining = current.started + self.timeout - time.monotonic()
        if remaining > 0:
            self._cond.wait(remaining)
            return
        if current.done or current.error is not None:
            return
        missing = sorted(set(range(self.num_workers)) - set(current.contributions))
        what = "the barrier" if key == _BARRIER_KEY else f"key {key!r}"
        current.error = (
            f"step aborted on store {self.store!r}: workers of rank {missing} did not push "
            f"{what} within {self.timeout:g} s; a restarted worker can rejoin and take their rank"
        )
        _log.warning("%s", current.error)
        # A rank that joined during the round is a worker on its way, not a lost one.
        for rank in missing:
            if self._joined_at.get(rank, 0.0) < current.started:
                self._depart(rank)
        if self._rounds.get(key) is current:
            del self._rounds[key]
        self._cond.notify_all()

    def _apply(self, rounds: list[tuple[str, dict[int, np.ndarray | None]]]
               ) -> dict[str, np.ndarray | None]:
        """For each key of `rounds`, sum its gradients in rank order and update its weight, all
        in one store write, counting each key's update.

        Without an optimizer the sum becomes the value (a gradient all-reduce)."""
        totals = {key: _summed(key, contributions) for key, contributions in rounds}
        store = self.registry.get(self.store)

        def change(state: StoreState) -> dict[str, np.ndarray]:
            if self.optimizer is None:  # the store keeps its own copy: a total may be a view
                return {key: np.array(total, copy=True) for key, total in totals.items()}
            weights = {}
            for key, total in totals.items():
                stored = cast(np.ndarray, state.array(key))
                weights[key] = np.empty_like(stored)  # the state's arrays stay as they are
                try:
                    self.optimizer.update(key, stored, total, out=weights[key])
                except (ArithmeticError, TypeError, ValueError) as error:
                    # Settings or states from the wire that no check before caught: the step
                    # fails for every worker alike, and nothing is written.
                    raise FailedPrecondition(
                        f"the optimizer of store {self.store!r} cannot update key {key!r}: "
                        f"{error}; set another optimizer or other optimizer states"
                    ) from None
            return weights

        # Recorded with the data: a snapshot holding this update knows which steps it was of.
        ranks = {rank for _, contributions in rounds for rank in contributions}
        stepping = {rank: self._stepping[rank] for rank in ranks
                    if rank in self._stepping and self._stepping[rank].number}
        state = store.update(change, {rank: step.number for rank, step in stepping.items()})
        for key in totals:
            self._updates[key] = self._updates.get(key, 0) + 1
            for step in stepping.values():
                step.values[key] = state.data[key]
        return {key: state.data[key] for key in totals}

    def _count(self) -> None:
        """Count the steps every key has had, once a push-pull applied all its keys: a step's
        snapshot holds the whole step (under the condition's lock)."""
        step = self._resumed + min(self._updates.values(), default=0)
        if step <= self.step:
            return
        self.step = step
        if self.snapshot_every and step % self.snapshot_every == 0:
            self._snapshot(step)

    # ---- snapshots ---------------------------------------------------------------------------

    def _snapshot(self, step: int) -> None:
        """Capture the store and its optimizer state now; write them off the training path."""
        try:
            pending = self.registry.begin_snapshot(self.store)
        except StoreError as error:
            _log.warning("store %s: no snapshot at step %d: %s", self.store, step, error)
            return
        self._snapshots.submit(self._write_snapshot, pending, step)

    def _write_snapshot(self, pending: PendingSnapshot, step: int) -> None:
        try:
            info = self.registry.catalog.finish_snapshot(
                pending, step=step, metadata={"trigger": "snapshot-every"})
            _log.info("store %s: snapshot %s at step %d", self.store, info.id, step)
        except Exception:
            _log.exception("store %s: periodic snapshot at step %d failed", self.store, step)

    def _resumed_step(self) -> int:
        """The step of the store's newest snapshot that has one (its optimizer state came with
        it)."""
        steps = [info.step for info in self.registry.snapshots(self.store) if info.step >= 0]
        return steps[-1] if steps else 0


def _summed(key: str, contributions: dict[int, np.ndarray | None]) -> np.ndarray:
    """The gradients of `contributions` summed in rank order."""
    arrays = [contributions[rank] for rank in sorted(contributions)]
    if any(array is None for array in arrays):
        raise InvalidArgument(f"a gradient for {key!r} came without data")
    # Each contribution was received for this round alone (a buffer, or the worker's region
    # of shared memory): the sum goes into the first in place, unless it is read-only (a
    # worker's gradient buffer that must stay as it is).
    total = cast(np.ndarray, arrays[0])
    for array in arrays[1:]:
        total = np.add(total, cast(np.ndarray, array),
                       out=total if total.flags.writeable else None)
    return total


def _one_name_per_key(
    checked: list[tuple[str, str, np.ndarray]],
) -> Iterator[list[tuple[str, str, np.ndarray]]]:
    """`checked` (name, key, gradient) in order, cut into runs in which no key comes twice."""
    batch: list[tuple[str, str, np.ndarray]] = []
    for entry in checked:
        if any(entry[1] == key for _, key, _ in batch):
            yield batch
            batch = []
        batch.append(entry)
    if batch:
        yield batch


class TrainingCoordinator:
    """The training sessions of every store of a registry."""

    def __init__(
        self,
        registry: StoreRegistry,
        *,
        worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
        snapshot_every: int = 0,
        lease: float = DEFAULT_WORKER_LEASE,
    ) -> None:
        self.registry = registry
        self.worker_timeout = worker_timeout
        self.snapshot_every = snapshot_every
        self.lease = lease
        self._sessions: dict[str, TrainingSession] = {}
        self._lock = threading.Lock()
        registry.on_delete.append(self.end)
        registry.training_step = self._step_of
        self._snapshots = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-every")

    def join(
        self, store: str, mode: str, num_workers: int, timeout: float = 0.0,
        wanted: int | None = None, previous: int = 0,
    ) -> tuple[int, int, TrainingSession]:
        """Join `store`'s training, starting it on the first join; `wanted` is the rank the
        worker asks for (granted when free), `previous` the worker_id of its last join.
        Returns the rank, the worker's worker_id and the session.

        Raises `StoreNotFound`, `InvalidArgument` (mode, worker count, timeout),
        `FailedPrecondition` (another mode or worker count, or no free rank)."""
        if mode not in MODES:
            raise InvalidArgument(f"mode must be one of {list(MODES)}, got {mode!r}")
        if not 1 <= num_workers <= MAX_WORKERS:
            raise InvalidArgument(f"num_workers must lie in [1, {MAX_WORKERS}], got {num_workers}")
        if not (math.isfinite(timeout) and 0 <= timeout <= MAX_TIMEOUT):
            raise InvalidArgument(
                f"timeout must be 0 (the server's default) or a number of seconds up to "
                f"{MAX_TIMEOUT:g}, got {timeout}"
            )
        self.registry.get(store)
        with self._lock:
            session = self._sessions.get(store)
            if session is None:
                session = self._sessions[store] = TrainingSession(
                    self.registry, store, mode, num_workers, timeout or self.worker_timeout,
                    self.snapshot_every, self._snapshots, self.lease,
                )
        if (session.mode, session.num_workers) != (mode, num_workers):
            raise FailedPrecondition(
                f"store {store!r} trains in {session.mode} mode with {session.num_workers} "
                f"workers; got {mode} with {num_workers}"
            )
        return *session.join(wanted, previous), session

    def session(self, store: str) -> TrainingSession:
        """The store's session. Raises `StoreNotFound`, `FailedPrecondition` (none yet)."""
        self.registry.get(store)
        session = self._sessions.get(store)
        if session is None:
            raise NotTraining(
                f"store {store!r} is not being trained: join its training first"
            )
        return session

    def _step_of(self, store: str) -> int:
        session = self._sessions.get(store)
        return NO_STEP if session is None else session.step

    def end(self, store: str, moved: bool = False) -> None:
        """End `store`'s session, if it has one: its store was deleted (or `moved` to another
        replica), and a store created under the same name starts training afresh."""
        with self._lock:
            session = self._sessions.pop(store, None)
        why = "moved to another replica" if moved else "was deleted"
        if session is not None:
            session.end(f"store {store!r} {why}: its training ended here", moved)

    def close(self) -> None:
        """The server stops, its calls done: finish the periodic snapshots being written,
        then commit each store still in training (`StoreRegistry.stop_training`)."""
        self._snapshots.shutdown(wait=True)
        with self._lock:
            stores = list(self._sessions)
        for store in stores:
            try:
                self.registry.stop_training(store, ShuttingDown(
                    f"store {store!r} is not trained here any more: the server is shutting "
                    "down"))
            except Exception:  # one store's trouble must not cost the others their snapshot
                _log.exception("store %s: no last snapshot of its training", store)
