"""`RemoteStore.pull` is all or nothing, whichever way it checks the local parameters."""

from __future__ import annotations

import numpy as np
import pytest

from paramstore.client.errors import FailedPrecondition


@pytest.fixture
def wide(client):
    """A store of 300 parameters whose names are too many to check in one listing."""
    store = client.create_store("wide")
    store.push({f"layer{index:03d}_" + "w" * 40: np.full(8, index, np.float32)
                for index in range(300)})
    return store


def test_a_mismatch_at_the_end_of_a_long_pull_leaves_every_parameter_as_it_was(wide):
    local = {name: np.full(8, -1, np.float32) for name in wide.collect_params()}
    last = list(local)[-1]
    local[last] = np.zeros(9, np.float32)
    with pytest.raises(FailedPrecondition, match=last):
        wide.pull(local)
    assert all((array == -1).all() for name, array in local.items() if name != last)
    np.testing.assert_array_equal(local[last], 0)


def test_a_long_pull_fills_every_parameter(wide):
    local = {name: np.zeros(8, np.float32) for name in wide.collect_params()}
    wide.pull(local)
    assert [int(array[0]) for array in local.values()] == list(range(300))


def test_a_pull_through_a_tie_fills_both_local_names(client):
    store = client.create_store("tied")
    shared = np.arange(3, dtype=np.float32)
    store.push({"encoder_weight": shared, "decoder_weight": shared})
    local = {"encoder_weight": np.zeros(3, np.float32), "decoder_weight": np.zeros(3, np.float32)}
    store.pull(local)
    np.testing.assert_array_equal(local["decoder_weight"], shared)
    np.testing.assert_array_equal(local["encoder_weight"], shared)
