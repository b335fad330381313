"""`RemoteStore.pull` is all or nothing, whichever way it checks the local parameters."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore.client import pulling
from paramstore.client.errors import Aborted, FailedPrecondition, ParameterNotFound
from paramstore.proto.v1 import paramstore_pb2 as pb


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


# ---- big pulls, read over parallel calls -----------------------------------------------------

TENSOR_ELEMENTS = 1 << 19  # 2 MiB of float32: sent as a spec and chunks, never in a batch


@pytest.fixture
def parallel(monkeypatch):
    """Pulls of a few MiB split into parallel calls, as pulls of hundreds of MiB do."""
    monkeypatch.setattr(pulling, "PART_MIN_BYTES", 1 << 20)


def _parts(params):
    """The parts a pull of `params` is read in, as `RemoteStore.pull` splits them."""
    return pulling.parts(params, pulling.PARALLEL_CALLS, pulling.PART_MIN_BYTES)


def _tensors(names, value):
    return {name: np.full(TENSOR_ELEMENTS, value, np.float32) for name in names}


def test_a_big_pull_is_read_over_parallel_calls_and_fills_every_parameter(client, parallel):
    store = client.create_store("big")
    pushed = {f"layer{index}_weight": np.arange(TENSOR_ELEMENTS, dtype=np.float32) + index
              for index in range(6)}
    store.push(pushed)
    local = {name: np.zeros(TENSOR_ELEMENTS, np.float32) for name in pushed}
    assert len(_parts(local)) == pulling.PARALLEL_CALLS
    store.pull(local)
    for name, array in pushed.items():
        np.testing.assert_array_equal(local[name], array)


def test_a_tie_split_across_parallel_calls_fills_both_names(client, parallel):
    store = client.create_store("tied")
    store.push(_tensors(["a_weight", "b_weight", "c_weight"], 1))
    store.tie("d_weight", "a_weight")
    store.set_data("a_weight", np.full(TENSOR_ELEMENTS, 7, np.float32))
    local = _tensors(["a_weight", "b_weight", "c_weight", "d_weight"], 0)
    assert any("a_weight" in part and "d_weight" not in part for part in _parts(local))
    store.pull(local)
    np.testing.assert_array_equal(local["d_weight"], 7)
    np.testing.assert_array_equal(local["a_weight"], 7)
    np.testing.assert_array_equal(local["b_weight"], 1)


def test_a_parallel_pull_of_a_store_being_written_gives_one_version(client, parallel):
    names = [f"layer{index}_weight" for index in range(4)]
    store = client.create_store("written")
    store.push(_tensors(names, 0))
    stop = threading.Event()

    def write() -> None:
        value = 0
        while not stop.is_set():
            value += 1
            store.push(_tensors(names, value))  # every tensor holds the version's number

    seen: set[float] = set()
    with ThreadPoolExecutor(1) as writer:
        writing = writer.submit(write)
        try:
            for _ in range(20):
                local = _tensors(names, -1)
                try:
                    store.pull(local)
                except Aborted:  # writes landed between the parts three times: allowed
                    assert all((array == -1).all() for array in local.values())
                    continue
                values = {float(value) for array in local.values() for value in np.unique(array)}
                assert len(values) == 1, f"one pull saw the values of several versions: {values}"
                seen |= values
        finally:
            stop.set()
            writing.result()
    assert len(seen) > 1  # the pulls did read while the store changed


def _open_stream(store):
    def open_stream(names):
        return store.client.stream("Pull", pb.PullRequest(store=store.name, names=names,
                                                          batches=True))
    return open_stream


def _open_listing(store):
    def open_listing(select):
        return store.client.stream("CollectParams",
                                   pb.CollectParamsRequest(store=store.name, select=select))
    return open_listing


def test_a_write_between_the_parallel_calls_of_a_pull_makes_it_read_them_again(client,
                                                                               parallel):
    names = [f"layer{index}_weight" for index in range(4)]
    store = client.create_store("moving")
    store.push(_tensors(names, 1))
    first_call_began = threading.Event()
    opened: list[list[str]] = []

    def open_stream(part):
        opened.append(part)
        replies = iter(_open_stream(store)(part))
        if len(opened) == 1:
            begin = next(replies)
            first_call_began.set()
            return itertools.chain([begin], replies)
        if len(opened) == 2:  # the first call has its version: a write lands before this one
            assert first_call_began.wait(10)
            store.push(_tensors(names, 2))
        return replies

    local = _tensors(names, 0)
    pulling.pull_into(open_stream, _open_listing(store), local,
                      lambda total: client.progress_bar(total, "pull"))
    assert len(opened) == 4  # both calls, twice
    assert all((array == 2).all() for array in local.values())


@pytest.fixture
def long_names(client):
    """A store of 2 MiB tensors whose names are too long to check in one listing first, so
    each parallel call checks its own parameters as they arrive."""
    store = client.create_store("long")
    names = [f"layer{index}_" + "w" * 1000 for index in range(6)]
    store.push(_tensors(names, 1))
    return store, names


def test_a_parallel_call_refused_by_the_server_leaves_every_parameter_as_it_was(long_names,
                                                                              parallel):
    store, names = long_names
    local = _tensors([*names, "missing_" + "w" * 1000], -1)
    with pytest.raises(ParameterNotFound, match="missing"):
        store.pull(local)
    assert all((array == -1).all() for array in local.values())


def test_a_parallel_call_that_meets_a_mismatch_leaves_every_parameter_as_it_was(long_names,
                                                                              parallel):
    store, names = long_names
    local = _tensors(names, -1)
    local[names[-1]] = np.full(3, -1, np.float32)
    assert len(_parts(local)) > 1
    with pytest.raises(FailedPrecondition, match=names[-1]):
        store.pull(local)
    assert all((array == -1).all() for array in local.values())


def test_a_name_missing_from_the_store_is_refused_before_anything_is_written(client):
    store = client.create_store("some")
    store.push({"a_weight": np.ones(4, np.float32)})
    local = {"a_weight": np.zeros(4, np.float32), "b_weight": np.zeros(4, np.float32)}
    with pytest.raises(ParameterNotFound, match="b_weight"):
        store.pull(local)
    np.testing.assert_array_equal(local["a_weight"], 0)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 16), min_size=1, max_size=24),
       ties=st.lists(st.tuples(st.integers(0, 23), st.integers(0, 23)), max_size=6),
       calls=st.integers(1, 6))
def test_parts_hold_every_name_once_in_order_with_tied_names_together(sizes, ties, calls):
    unit = 1 << 20  # sizes in MiB, against parts of at least 4 MiB
    params = {f"p{index}": np.empty(size * unit, np.uint8) for index, size in enumerate(sizes)}
    names = list(params)
    for alias, target in ties:
        if alias < len(names) and target < len(names):
            params[names[alias]] = params[names[target]]
    split = pulling.parts(params, calls, 4 * unit)
    assert sorted(name for part in split for name in part) == sorted(names)
    assert all(part == sorted(part, key=names.index) for part in split)
    assert all(part for part in split) and 1 <= len(split) <= calls
    part_of = {name: index for index, part in enumerate(split) for name in part}
    assert all(part_of[a] == part_of[b] for a in names for b in names
               if params[a] is params[b])
    if len({id(array) for array in params.values()}) == len(params) and len(split) > 1:
        loads = [sum(params[name].nbytes for name in part) for part in split]
        assert max(loads) - min(loads) <= max(sizes) * unit  # about equal: within one tensor
