"""Limits on every path that adds bytes or names (push, tie, untie, import, restore), and
numbers or text out of range refused at the edge: nothing over a limit is ever held, and no
hostile file breaks a listing for everyone."""

from __future__ import annotations

import re

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramstore.client.errors import InvalidArgument, ResourceExhausted
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.limits import Limits

pytest_plugins = ("server_fixtures",)  # `make_server`

KIB = 1 << 10
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def limited(make_server, data_dir=None, **bounds):
    return make_server(data_dir, limits=Limits(**bounds))


def write_file(path, tensors, metadata=None):
    safetensors.numpy.save_file(tensors, str(path), metadata=metadata)
    return path


def test_an_untie_over_the_store_byte_limit_is_refused_and_the_store_still_works(make_server):
    server = limited(make_server, max_store_bytes=6 * KIB)
    with server.connect() as client:
        store = client.create_store("net")
        store.push({"a": np.zeros(1024, np.float32)})  # 4 KiB
        store.tie("b", "a")
        with pytest.raises(ResourceExhausted, match="per store"):
            store.untie("b")  # would make it 8 KiB
        assert store.ties() == {"b": "a"}
        store.push({"c": np.zeros(256, np.float32)})  # the store is still writable


def test_a_tie_counts_its_new_name_against_the_limits(make_server):
    server = limited(make_server, max_parameters=2, max_name_length=8)
    with server.connect() as client:
        store = client.create_store("net")
        store.push({"a": np.zeros(4, np.float32)})
        with pytest.raises(ResourceExhausted, match="characters"):
            store.tie("a-very-long-alias", "a")
        store.tie("b", "a")
        with pytest.raises(ResourceExhausted, match="parameters"):
            store.tie("c", "a")
        assert store.ties() == {"b": "a"}


@pytest.mark.parametrize("bounds, message", [
    ({"max_store_bytes": 4 * KIB}, "per store"),
    ({"max_total_bytes": 6 * KIB}, "total"),
    ({"max_parameters": 2}, "parameters"),
    ({"max_name_length": 3}, "characters"),
    ({"max_rank": 1}, "dimensions"),
])
def test_an_import_over_any_limit_is_refused_and_creates_nothing(make_server, tmp_path,
                                                                  bounds, message):
    server = limited(make_server, **bounds)
    path = write_file(tmp_path / "big.safetensors", {
        "w": np.zeros((32, 32), np.float32), "bias": np.zeros(16, np.float32),
        "x": np.zeros(4, np.float32)})
    with server.connect() as client:
        client.create_store("other").push({"v": np.zeros(512, np.float32)})  # 2 KiB
        with pytest.raises(ResourceExhausted, match=message):
            client.import_snapshot(path, store="imported")
        assert client.list_stores() == ["other"]


def test_a_restore_over_the_limits_of_a_restarted_server_is_refused(make_server, tmp_path):
    data_dir = tmp_path / "data"
    first = make_server(data_dir)
    with first.connect() as client:
        store = client.create_store("net")
        store.push({"a": np.zeros(1024, np.float32)})
        snapshot = store.snapshot()
    first.server.stop(None).wait()
    second = limited(make_server, data_dir, max_store_bytes=2 * KIB)
    with second.connect() as client:
        store = client.store("net")
        before = store.info().version
        with pytest.raises(ResourceExhausted, match="per store"):
            store.restore(snapshot.id)
        assert store.info().version == before


@pytest.mark.parametrize("metadata, message", [
    ({"paramstore.version": str(2**64 + 5)}, "version"),
    ({"paramstore.version": "-3"}, "version"),
    ({"paramstore.step": str(2**70)}, "step"),
    ({"paramstore.prefix": "net\x1b[31m_"}, "control"),
    ({"paramstore.prefix": "p" * 5000}, "characters"),
    ({"note": "\x1b]0;pwned\x07"}, "control"),
    ({"k" * 300: "v"}, "longer"),
])
def test_a_hostile_import_is_refused_and_listings_keep_working(make_server, tmp_path,
                                                                metadata, message):
    server = make_server()
    path = write_file(tmp_path / "hostile.safetensors", {"w": np.zeros(4, np.float32)},
                      metadata)
    with server.connect() as client:
        with pytest.raises(InvalidArgument, match=message):
            client.import_snapshot(path, store="hostile")
        assert client.list_stores() == []
        client.create_store("fine").snapshot()
        assert [info.id for info in client.store("fine").snapshots()]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(step=st.integers(min_value=-(2**70), max_value=2**70), value=st.text(max_size=20))
def test_snapshot_steps_and_metadata_are_taken_or_refused_never_stored_broken(
        server, step, value):
    with server.connect() as client:
        store = client.store("s") if "s" in client.list_stores() else client.create_store("s")
        try:
            store.snapshot(step=step, metadata={"note": value})
        except (InvalidArgument, ValueError):
            pass  # refused at the edge (or by protobuf in the SDK, for int64 overflow)
        for info in store.snapshots():
            assert 0 <= info.step < 2**63 or info.step == -1
            assert not CONTROL.search(info.metadata.get("note", ""))
        assert "s" in client.list_stores()


def test_snapshot_listings_larger_than_a_message_come_in_pages(server):
    big = {f"key{number}": "x" * 4000 for number in range(15)}  # 60 KiB per snapshot
    with server.connect() as client:
        store = client.create_store("s")
        taken = [store.snapshot(step=step, metadata=big).id for step in range(80)]  # ~4.8 MiB
        listed = store.snapshots()
        assert [info.id for info in listed] == taken
        assert all(info.metadata == big for info in listed)


def test_tie_listings_larger_than_a_message_come_in_pages(server):
    with server.connect() as client:
        store = client.create_store("s")
        store.push({"a": np.zeros(2, np.float32)})
        channel_stub = store.client._method("Push")
        aliases = [f"{number:05d}" + "t" * 1000 for number in range(5000)]  # ~5 MiB of names
        requests = [pb.PushRequest(begin=pb.PushBegin(store="s", parameter_count=len(aliases)))]
        requests += [pb.PushRequest(parameter=pb.ParameterSpec(
            name=alias, alias_of="a", dtype="float32", dtype_label="float32", kind="Parameter",
            shape=[2])) for alias in aliases]
        channel_stub(iter(message.SerializeToString() for message in requests))
        assert store.ties() == {alias: "a" for alias in aliases}
        assert len(store.collect_params()) == len(aliases) + 1


def test_a_pull_naming_a_parameter_twice_is_refused(server):
    with server.connect() as client:
        store = client.create_store("s")
        store.push({"a": np.ones(1 << 18, np.float32)})
        with pytest.raises(InvalidArgument, match="more than once"):
            list(client.stream("Pull", pb.PullRequest(store="s", names=["a"] * 1000)))
