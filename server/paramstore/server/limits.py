"""Configurable bounds on what clients may make the server hold.

A push (or set_data) is checked parameter by parameter as its specs arrive, before the buffer
for that parameter's data is allocated: a request over a bound gets `ResourceExhausted` and
writes nothing. A store's bytes count every parameter of known shape (with data or not, so
that a later `initialize` cannot exceed them); an alias adds no bytes. The bounds are checked
against the stores as they are when the request arrives, so two concurrent pushes may each
pass and together overshoot a store or total bound by at most one request's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from paramstore.server.errors import ResourceExhausted
from paramstore.server.stores import ParameterInfo, StoreState

UNLIMITED = 0
DEFAULT_MAX_PARAMETERS = 1_000_000


def default_max_total_bytes() -> int:
    """Half of this machine's memory (16 GiB where it cannot be read): the stores live in
    memory, and the server needs room for requests in flight and snapshots too."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 16 << 30


@dataclass(frozen=True)
class Limits:
    """Bounds per store and in total; 0 means unlimited. Tensor bytes are bounded by the
    registry's `max_tensor_bytes`. The defaults bound the total bytes (half the machine's
    memory) and the parameters per store; names and ranks are bounded by the protocol."""

    max_store_bytes: int = UNLIMITED  # the total bound still applies
    max_total_bytes: int = field(default_factory=default_max_total_bytes)
    max_parameters: int = DEFAULT_MAX_PARAMETERS  # per store, aliases included
    max_name_length: int = UNLIMITED  # characters of a parameter name
    max_rank: int = UNLIMITED  # dimensions of a tensor

    def budget(self, state: StoreState, other_stores_bytes: int) -> Budget:
        """The room left for one request to the store in `state`; `other_stores_bytes`: the
        bytes of every other store (only needed with `max_total_bytes`)."""
        return Budget(self, state, other_stores_bytes)

    def check_whole(self, state: StoreState, other_stores_bytes: int) -> None:
        """Check a store's whole contents, as an import or a restore brings them, against every
        bound. Raises `ResourceExhausted`."""
        budget = Budget(self, StoreState(), other_stores_bytes)
        for info in state.parameters.values():
            budget.admit(info)

    @property
    def bounds_total(self) -> bool:
        return self.max_total_bytes != UNLIMITED


def capacity_bytes(state: StoreState) -> int:
    """The bytes a store holds once every parameter of known shape has data."""
    return sum(info.nbytes for info in state.parameters.values() if not info.alias_of)


class Budget:
    """Admits the parameters of one request one at a time, or refuses the request."""

    def __init__(self, limits: Limits, state: StoreState, other_stores_bytes: int) -> None:
        self.limits = limits
        self.state = state
        self.other_stores_bytes = other_stores_bytes
        self.counted = limits.max_store_bytes != UNLIMITED or limits.bounds_total
        self.store_bytes = capacity_bytes(state) if self.counted else 0
        self.parameters = len(state.parameters)
        self.seen: set[str] = set()

    def admit(self, info: ParameterInfo) -> None:
        """Account for `info`; raise `ResourceExhausted` naming the bound it breaks."""
        limits = self.limits
        if limits.max_name_length and len(info.name) > limits.max_name_length:
            raise ResourceExhausted(
                f"parameter name {info.name[:40]!r}... has {len(info.name)} characters, more "
                f"than the server's limit of {limits.max_name_length}"
            )
        if limits.max_rank and info.shape is not None and len(info.shape) > limits.max_rank:
            raise ResourceExhausted(
                f"parameter {info.name!r} has {len(info.shape)} dimensions, more than the "
                f"server's limit of {limits.max_rank}"
            )
        if info.name in self.seen:
            return
        self.seen.add(info.name)
        existing = self.state.parameters.get(info.name)
        if existing is info:
            return  # a stored parameter as it is: no new name, no new bytes
        if existing is None:
            self.parameters += 1
            if limits.max_parameters and self.parameters > limits.max_parameters:
                raise ResourceExhausted(
                    f"store would hold {self.parameters} parameters, more than the server's "
                    f"limit of {limits.max_parameters} per store"
                )
        if not self.counted or info.alias_of:
            return
        # An existing parameter keeps its shape, so only new bytes or a first shape add up.
        before = existing.nbytes if existing is not None and not existing.alias_of else 0
        self.store_bytes += max(0, info.nbytes - before)
        self._check_bytes(info.name)

    def _check_bytes(self, name: str) -> None:
        limits = self.limits
        if limits.max_store_bytes and self.store_bytes > limits.max_store_bytes:
            raise ResourceExhausted(
                f"adding {name!r} would make the store {self.store_bytes} bytes, more than the "
                f"server's limit of {limits.max_store_bytes} per store"
            )
        total = self.store_bytes + self.other_stores_bytes
        if limits.max_total_bytes and total > limits.max_total_bytes:
            raise ResourceExhausted(
                f"adding {name!r} would make all stores {total} bytes, more than the server's "
                f"total limit of {limits.max_total_bytes}"
            )
