"""What changed between two states of a store, parameter by parameter. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from paramstore.server.stores import StoreState

_BLOCK = 1 << 20  # elements per step: the difference never needs a whole tensor's memory


@dataclass(frozen=True)
class ParameterDiff:
    """One parameter of the two states: `status` is changed, unchanged, added, removed or
    reshaped (shape or dtype differ); `l2` the L2 norm of b - a and `relative` that over the
    norm of a (None where there is no data to compare, or a's norm is 0); `tie_a`/`tie_b` the
    target the name is an alias of in each state ("" for none)."""

    name: str
    status: str
    l2: float | None = None
    relative: float | None = None
    tie_a: str = ""
    tie_b: str = ""


def diff(a: StoreState, b: StoreState) -> list[ParameterDiff]:
    """One record per parameter of `a` then of the new ones of `b`, in store order."""
    records = []
    for name in [*a.parameters, *(name for name in b.parameters if name not in a.parameters)]:
        info_a, info_b = a.parameters.get(name), b.parameters.get(name)
        ties: dict[str, Any] = {"tie_a": (info_a and info_a.alias_of) or "",
                "tie_b": (info_b and info_b.alias_of) or ""}
        if info_a is None or info_b is None:
            records.append(ParameterDiff(name, "added" if info_a is None else "removed", **ties))
            continue
        if info_a.shape != info_b.shape or info_a.dtype != info_b.dtype:
            records.append(ParameterDiff(name, "reshaped", **ties))
            continue
        data_a, data_b = a.array(name), b.array(name)
        if data_a is None or data_b is None:
            same = data_a is data_b and ties["tie_a"] == ties["tie_b"]
            records.append(ParameterDiff(name, "unchanged" if same else "changed", **ties))
            continue
        l2, norm, identical = _compared(data_a, data_b)
        changed = not identical or ties["tie_a"] != ties["tie_b"]
        records.append(ParameterDiff(name, "changed" if changed else "unchanged", l2,
                                     l2 / norm if norm else None, **ties))
    return records


def _compared(a: np.ndarray, b: np.ndarray) -> tuple[float, float, bool]:
    """(|b - a|, |a|) in float64 and whether the bytes are identical, a block at a time."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    squared_difference = squared_a = 0.0
    identical = True
    for start in range(0, flat_a.size, _BLOCK):
        raw_a, raw_b = flat_a[start:start + _BLOCK], flat_b[start:start + _BLOCK]
        identical = identical and raw_a.tobytes() == raw_b.tobytes()
        block_a, block_b = raw_a.astype(np.float64), raw_b.astype(np.float64)
        squared_difference += float(np.dot(block_b - block_a, block_b - block_a))
        squared_a += float(np.dot(block_a, block_a))
    return squared_difference ** 0.5, squared_a ** 0.5, identical
