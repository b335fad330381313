"""Parameter stores in memory: parameters in insertion order, ties, and a version per write.

A store's contents are an immutable `StoreState`. A write builds a new state from the current
one and swaps it in under the store's lock; a reader takes the current state and uses it with no
lock at all, so it never sees half of a write and never blocks one. Arrays in a state are
read-only and shared between states: a write replaces arrays, it never modifies them.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from paramstore import optimizer as opt
from paramstore.server import validation
from paramstore.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
)

Shape = tuple[int, ...] | None  # None: the shape is unknown (Gluon prints `shape=None`)


@dataclass(frozen=True)
class ParameterInfo:
    """One parameter as a ParameterDict lists it. For an alias, `alias_of` names the target and
    the other fields repeat the target's."""

    name: str
    shape: Shape
    dtype: str
    dtype_label: str
    kind: str = "Parameter"
    alias_of: str | None = None

    @functools.cached_property  # asked per parameter of every push: worked out once
    def nbytes(self) -> int:
        """The bytes of its data (0 while its shape is unknown)."""
        if self.shape is None:
            return 0
        return math.prod(self.shape) * validation.ITEMSIZES[self.dtype]


class Incoming(NamedTuple):  # a tuple: made per pushed parameter, quicker than a dataclass
    """A parameter as a push declares it, with its data when it has some."""

    info: ParameterInfo
    data: np.ndarray | None = None


@dataclass(frozen=True)
class AppliedStep:
    """What a training worker's numbered step has updated so far: its number and the keys
    (stored names) it changed. A store commits its workers' last steps with every snapshot, so
    that the server holding the store next applies none of those keys again when a worker
    sends its step again."""

    number: int
    keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StoreState:
    """A store's contents at one version. Never modified: writes make a new one."""

    prefix: str = ""
    version: int = 0
    parameters: Mapping[str, ParameterInfo] = field(default_factory=dict)
    data: Mapping[str, np.ndarray] = field(default_factory=dict)  # stored names only

    def info(self, name: str) -> ParameterInfo:
        """The parameter `name`, an alias showing its target's shape and dtype."""
        try:
            info = self.parameters[name]
        except KeyError:
            raise ParameterNotFound(f"the store has no parameter {name!r}") from None
        if info.alias_of is None:
            return info
        target = self.parameters[info.alias_of]
        return dataclasses.replace(target, name=name, alias_of=info.alias_of)

    def array(self, name: str) -> np.ndarray | None:
        """The data of `name` (its target's for an alias), or None when it has none."""
        info = self.parameters.get(name)
        target = info.alias_of if info is not None and info.alias_of else name
        return self.data.get(target)

    def select(self, matches: Callable[[str], bool]) -> list[ParameterInfo]:
        """The parameters whose names `matches` accepts, in store order."""
        return [self.info(name) for name in self.parameters if matches(name)]

    def ties(self) -> dict[str, str]:
        """alias -> target."""
        return {name: info.alias_of for name, info in self.parameters.items() if info.alias_of}

    @property
    def data_bytes(self) -> int:
        return sum(array.nbytes for array in self.data.values())


def next_version(previous: int) -> int:
    """A version after `previous`, also after any version of an earlier server run."""
    return max(previous + 1, time.time_ns())


class Store:
    """One named store. Writers serialize on the store's lock; readers use `state()`.

    `optimizer` is the optimizer of the store's training, if any: it updates weights only inside
    `update`, under the lock, so `capture` sees weights and optimizer state of the same moment,
    and so do the training workers' last steps (`steps`), recorded by the same `update`.
    """

    def __init__(
        self, name: str, state: StoreState | None = None, optimizer: opt.Optimizer | None = None,
        steps: Mapping[int, AppliedStep] | None = None,
    ) -> None:
        """A store named `name`, empty or holding `state` (under a new version), with the last
        `steps` of its training workers (rank -> step)."""
        self.name = name
        self._lock = threading.Lock()
        state = state or StoreState()
        self._state = dataclasses.replace(state, version=next_version(state.version))
        self.optimizer = optimizer
        # rank -> its last step's number and the keys it updated; changed under the lock only
        self._steps = {rank: (step.number, set(step.keys)) for rank, step in (steps or {}).items()}
        self._closed: Exception | None = None

    def close(self, error: Exception) -> None:
        """Refuse every later write with `error` (the store moved to another server); a write
        in progress finishes first, so a snapshot taken after this holds every acknowledged
        write."""
        with self._lock:
            self._closed = error

    def check_open(self) -> None:
        """Raise the error the store was closed with, if it was."""
        if self._closed is not None:
            raise copy.copy(self._closed)  # a fresh exception for each refused write

    def state(self) -> StoreState:
        """The current contents (an attribute read is atomic: no lock needed)."""
        return self._state

    def capture(self) -> tuple[StoreState, opt.Optimizer | None, dict[int, AppliedStep]]:
        """The contents, a copy of the optimizer and the workers' last steps, as of one
        moment."""
        with self._lock:
            optimizer = None if self.optimizer is None else opt.copy_of(self.optimizer)
            return self._state, optimizer, self._applied_steps()

    def steps(self) -> dict[int, AppliedStep]:
        """The last numbered step of each training worker (rank) and what it updated."""
        with self._lock:
            return self._applied_steps()

    def forget_steps(self, rank: int) -> None:
        """Drop the steps of `rank`'s worker: a new worker, numbering its steps from 1, took it."""
        with self._lock:
            self._steps.pop(rank, None)

    def _applied_steps(self) -> dict[int, AppliedStep]:
        return {rank: AppliedStep(number, frozenset(keys))
                for rank, (number, keys) in self._steps.items()}

    def push(
        self, prefix: str, items: Iterable[Incoming], *, expected_version: int = 0
    ) -> StoreState:
        """Add or overwrite parameters and record the pushed ties, all or nothing.

        A pushed name is made to match the push: its own parameter, or an alias when
        `alias_of` is set. Raises `InvalidArgument` (duplicates, bad aliases),
        `FailedPrecondition` (shape or dtype differs from the stored parameter, or the store
        moved past `expected_version`).
        """
        with self._lock:
            current = self._check_version(expected_version)
            parameters, data = dict(current.parameters), dict(current.data)
            aliases = []
            for item in _unique(items):
                info = item.info
                if info.alias_of:
                    aliases.append(info)
                    continue
                existing = parameters.get(info.name)
                if existing is info and item.data is not None:
                    data[info.name] = _frozen(item.data)  # new data, the description kept
                    continue
                if existing is not None:
                    existing = current.info(info.name)
                    kept = current.array(info.name)
                    info = _merged(existing, info, has_data=kept is not None)
                    if item.data is None and kept is not None:
                        data[info.name] = kept
                # Aliases were set aside above: `info` names its own tensor (alias_of "" or None).
                parameters[info.name] = info if info.alias_of is None else dataclasses.replace(
                    info, alias_of=None)
                if item.data is not None:
                    data[info.name] = _frozen(item.data)
            tied = _tied(parameters)
            for info in aliases:
                _tie(parameters, data, info.name, info.alias_of or "", tied)
            return self._commit(current, prefix, parameters, data)

    def set_data(self, items: Iterable[Incoming]) -> StoreState:
        """Overwrite the data of existing parameters (through an alias: its target's).

        Raises `ParameterNotFound`, `InvalidArgument` (no data, duplicates),
        `FailedPrecondition` (shape or dtype differs).
        """
        with self._lock:
            current = self._state
            parameters, data = dict(current.parameters), dict(current.data)
            for item in _unique(items):
                existing = current.info(item.info.name)
                if item.data is None:
                    raise InvalidArgument(f"setting the data of {item.info.name!r} needs data")
                target = existing.alias_of or existing.name
                merged = _merged(existing, item.info, has_data=current.array(target) is not None)
                parameters[target] = dataclasses.replace(
                    parameters[target], shape=merged.shape, dtype=merged.dtype
                )
                data[target] = _frozen(item.data)
            return self._commit(current, current.prefix, parameters, data)

    def tie(self, alias: str, target: str) -> StoreState:
        """Make `alias` a second name of `target`'s tensor; an existing `alias` parameter gives
        up its own data. Raises `ParameterNotFound` (target), `FailedPrecondition`."""
        with self._lock:
            current = self._state
            current.info(target)
            parameters, data = dict(current.parameters), dict(current.data)
            _tie(parameters, data, alias, target, _tied(parameters))
            return self._commit(current, current.prefix, parameters, data)

    def untie(self, alias: str) -> StoreState:
        """Give `alias` its own tensor again (a copy of the target's current data).

        Raises `ParameterNotFound` when `alias` is not an alias."""
        with self._lock:
            current = self._state
            info = current.parameters.get(alias)
            if info is None or info.alias_of is None:
                raise ParameterNotFound(f"the store has no alias {alias!r}")
            parameters, data = dict(current.parameters), dict(current.data)
            parameters[alias] = dataclasses.replace(current.info(alias), alias_of=None)
            shared = current.array(alias)
            if shared is not None:
                data[alias] = shared  # arrays are never modified: sharing is a copy
            return self._commit(current, current.prefix, parameters, data)

    def replace(self, state: StoreState, optimizer: opt.Optimizer | None = None) -> StoreState:
        """Replace the whole contents (a restore), with a new version. The optimizer state goes
        back to `optimizer`'s; without one, a training store's optimizer starts afresh."""
        with self._lock:
            current = self._state
            if optimizer is None and self.optimizer is not None:
                optimizer = opt.create_from_json(self.optimizer.dumps())
            replaced = self._commit(current, state.prefix, dict(state.parameters),
                                    dict(state.data))
            self.optimizer = optimizer  # after the commit, which a closed store refuses
            return replaced

    def update(
        self, change: Callable[[StoreState], Mapping[str, np.ndarray]],
        steps: Mapping[int, int] | None = None,
    ) -> StoreState:
        """Overwrite data computed by `change(current_state)` -> {stored name: array}, under the
        store's lock so that no other write interleaves. `change` raises to change nothing.
        `steps`: rank -> the numbered training step of that worker the update belongs to; the
        changed names are recorded as applied in it, with the data."""
        with self._lock:
            current = self._state
            data = dict(current.data)
            changed = change(current)
            for name, array in changed.items():
                data[name] = _frozen(array)
            committed = self._commit(current, current.prefix, dict(current.parameters), data)
            for rank, number in (steps or {}).items():
                record = self._steps.get(rank)
                if record is None or record[0] != number:
                    record = self._steps[rank] = (number, set())
                record[1].update(changed)
            return committed

    def _check_version(self, expected: int) -> StoreState:
        current = self._state
        if expected and current.version != expected:
            raise FailedPrecondition(
                f"store {self.name!r} is at version {current.version}, not {expected}; "
                "collect its parameters again and retry"
            )
        return current

    def _commit(
        self,
        current: StoreState,
        prefix: str,
        parameters: dict[str, ParameterInfo],
        data: dict[str, np.ndarray],
    ) -> StoreState:
        self.check_open()
        self._state = StoreState(prefix, next_version(current.version), parameters, data)
        return self._state


def _unique(items: Iterable[Incoming]) -> list[Incoming]:
    """`items` as a list; raises `InvalidArgument` when a name appears twice."""
    items = list(items)
    names = [item.info.name for item in items]
    if len(set(names)) != len(names):
        counts = collections.Counter(names)
        twice = next(name for name in names if counts[name] > 1)
        raise InvalidArgument(f"parameter {twice!r} appears twice in one request")
    return items


def _merged(existing: ParameterInfo, new: ParameterInfo, *, has_data: bool) -> ParameterInfo:
    """`new` with the shape merged from both (Gluon's unknown 0 dimensions filled in).

    Raises `FailedPrecondition` when the shapes cannot agree or when the dtype changes under
    existing data."""
    if has_data and existing.dtype != new.dtype:
        raise FailedPrecondition(
            f"parameter {new.name!r} holds {existing.dtype} data in the store; got {new.dtype}"
        )
    shape = merge_shapes(new.name, existing.shape, new.shape)
    return new if shape == new.shape else dataclasses.replace(new, shape=shape)


def merge_shapes(name: str, stored: Shape, given: Shape) -> Shape:
    """The shape both describe, a 0 or None standing for what is not known yet.

    Raises `FailedPrecondition` when they disagree."""
    if stored is None or given is None:
        return given if stored is None else stored
    if stored == given:
        return stored  # the common case, checked first because it is cheap
    if len(stored) == len(given) and all(a == b or 0 in (a, b) for a, b in zip(stored, given)):
        return tuple(max(a, b) for a, b in zip(stored, given))
    raise FailedPrecondition(
        f"parameter {name!r} has shape {stored} in the store; got {given}"
    )


def _tied(parameters: dict[str, ParameterInfo]) -> collections.Counter[str]:
    """How many aliases each target has."""
    return collections.Counter(info.alias_of for info in parameters.values() if info.alias_of)


def _tie(
    parameters: dict[str, ParameterInfo], data: dict[str, np.ndarray], alias: str, target: str,
    tied: collections.Counter[str],
) -> None:
    """Make `alias` a name of `target`'s tensor, in the dicts being built; `tied`: `_tied` of
    `parameters`, kept up to date (a push of many aliases checks each in constant time)."""
    named = parameters.get(target)
    if named is None:
        raise ParameterNotFound(f"cannot tie {alias!r} to {target!r}: no such parameter")
    if alias in (target, named.alias_of):  # to itself, or to its own alias
        raise FailedPrecondition(f"cannot tie {alias!r} to itself")
    target = named.alias_of or target
    root = parameters[target]
    existing = parameters.get(alias)
    if existing is not None and existing.alias_of is None:
        if tied[alias]:
            raise FailedPrecondition(
                f"cannot tie {alias!r} to {target!r}: other names are tied to {alias!r}; "
                "untie them first"
            )
        merge_shapes(alias, existing.shape, root.shape)
        if existing.dtype != root.dtype:
            raise FailedPrecondition(
                f"cannot tie {alias!r} ({existing.dtype}) to {target!r} ({root.dtype})"
            )
    if existing is not None and existing.alias_of:
        tied[existing.alias_of] -= 1
    parameters[alias] = dataclasses.replace(root, name=alias, alias_of=target)
    tied[target] += 1
    data.pop(alias, None)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def validated_info(
    name: str,
    shape: Shape,
    dtype: str,
    dtype_label: str,
    kind: str,
    alias_of: str | None,
    max_bytes: int,
) -> ParameterInfo:
    """A `ParameterInfo` from untrusted values. Raises `InvalidArgument` naming the bad one."""
    validation.parameter_name(name)
    if alias_of:
        validation.parameter_name(alias_of)
    itemsize = validation.ITEMSIZES[validation.dtype(dtype)]
    checked_shape = None if shape is None else validation.shape(name, shape, itemsize, max_bytes)
    return ParameterInfo(
        name=name,
        shape=checked_shape,
        dtype=dtype,
        dtype_label=validation.label(name, dtype_label or dtype),
        kind=validation.kind(name, kind or "Parameter"),
        alias_of=alias_of or None,
    )
