"""One client's share of the concurrency tests: a loop of pushes and pulls on a shared store,
checking each pull saw one whole push. Importable by child processes."""

from __future__ import annotations

import numpy as np

from paramstore.client import connect

PARAMETERS = 16
SIZE = 4096  # floats per parameter


def uniform_params(value: float) -> dict[str, np.ndarray]:
    """Every parameter filled with `value`: a pull mixing two pushes shows two values."""
    return {f"layer{index}_weight": np.full(SIZE, value, np.float32)
            for index in range(PARAMETERS)}


def push_and_pull(address: str, client_index: int, rounds: int) -> tuple[list[int], list[float]]:
    """Push `rounds` uniform dicts to the store "shared", pulling after each one. Returns the
    versions the pushes created and the value every pull saw. Raises `AssertionError` when a
    pull holds values of more than one push."""
    versions, seen = [], []
    with connect(address) as client:
        store = client.store("shared")
        for round_index in range(rounds):
            versions.append(store.push(uniform_params(client_index * 1000 + round_index)))
            local = uniform_params(-1.0)
            store.pull(local)
            values = np.unique(np.concatenate(list(local.values())))
            assert len(values) == 1, f"a pull mixed pushes: {values}"
            seen.append(float(values[0]))
    return versions, seen
