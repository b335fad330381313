"""Server limits: requests over them get RESOURCE_EXHAUSTED before any memory is allocated
and change nothing."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from paramstore.client import connect
from paramstore.client.errors import InvalidArgument, ResourceExhausted
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc
from paramstore.server.limits import Limits

KIB = 1 << 10


def limited(make_server, **bounds):
    options = {"max_tensor_bytes": bounds.pop("max_tensor_bytes")} \
        if "max_tensor_bytes" in bounds else {}
    return make_server(limits=Limits(**bounds), **options)


def test_a_push_over_the_store_byte_limit_is_refused_and_writes_nothing(make_server):
    server = limited(make_server, max_store_bytes=4 * KIB)
    with server.connect() as client:
        store = client.create_store("net")
        store.push({"a": np.zeros(512, np.float32)})  # 2 KiB
        with pytest.raises(ResourceExhausted, match="per store"):
            store.push({"b": np.zeros(256, np.float32), "c": np.zeros(512, np.float32)})
        assert list(store.collect_params()) == ["a"]


def test_overwriting_a_full_store_is_not_counted_twice(make_server):
    server = limited(make_server, max_store_bytes=4 * KIB)
    with server.connect() as client:
        store = client.create_store("net")
        store.push({"a": np.zeros(1024, np.float32)})  # exactly 4 KiB
        store.push({"a": np.ones(1024, np.float32)})
        local = {"a": np.zeros(1024, np.float32)}
        store.pull(local)
        np.testing.assert_array_equal(local["a"], 1)


def test_declared_shapes_count_against_the_store_limit_before_initialize(make_server):
    from paramstore import gluon

    server = limited(make_server, max_store_bytes=4 * KIB)
    deferred = gluon.Parameter("big", shape=(4096,))  # 16 KiB once initialized
    with server.connect() as client:
        store = client.create_store("net")
        with pytest.raises(ResourceExhausted):
            store.push({"big": deferred})
        assert list(store.collect_params()) == []


def test_a_push_over_the_total_byte_limit_is_refused(make_server):
    server = limited(make_server, max_total_bytes=4 * KIB)
    with server.connect() as client:
        client.create_store("one").push({"a": np.zeros(768, np.float32)})  # 3 KiB
        other = client.create_store("two")
        with pytest.raises(ResourceExhausted, match="total"):
            other.push({"b": np.zeros(512, np.float32)})
        assert list(other.collect_params()) == []
        other.push({"b": np.zeros(256, np.float32)})  # exactly at the limit


def test_a_push_over_the_parameter_count_limit_is_refused(make_server):
    server = limited(make_server, max_parameters=3)
    with server.connect() as client:
        store = client.create_store("net")
        store.push({"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)})
        with pytest.raises(ResourceExhausted, match="parameters"):
            store.push({name: np.zeros(1, np.float32) for name in "cd"})
        assert list(store.collect_params()) == ["a", "b"]
        store.push({"a": np.ones(1, np.float32), "c": np.zeros(1, np.float32)})


def test_a_name_over_the_length_limit_is_refused(make_server):
    server = limited(make_server, max_name_length=16)
    with server.connect() as client:
        store = client.create_store("net")
        with pytest.raises(ResourceExhausted, match="characters"):
            store.push({"x" * 17: np.zeros(1, np.float32)})
        store.push({"x" * 16: np.zeros(1, np.float32)})
        assert list(store.collect_params()) == ["x" * 16]


def test_a_tensor_over_the_rank_limit_is_refused(make_server):
    server = limited(make_server, max_rank=2)
    with server.connect() as client:
        store = client.create_store("net")
        with pytest.raises(ResourceExhausted, match="dimensions"):
            store.push({"w": np.zeros((1, 1, 1), np.float32)})
        assert list(store.collect_params()) == []


def test_a_tensor_over_the_size_limit_is_refused(make_server):
    server = limited(make_server, max_tensor_bytes=KIB)
    with server.connect() as client:
        store = client.create_store("net")
        with pytest.raises(ResourceExhausted, match="per tensor"):
            store.push({"w": np.zeros(257, np.float32)})
        store.push({"w": np.zeros(256, np.float32)})


def raw_push(address: str, *messages: pb.PushRequest) -> grpc.RpcError:
    """Send a hand-made push stream; return the error it ends with."""
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.ParamStoreStub(channel).Push(iter(messages), timeout=30)
    return caught.value


@pytest.mark.parametrize("bounds", [
    {"max_tensor_bytes": KIB},
    {"max_tensor_bytes": 1 << 60, "max_store_bytes": KIB},
    {"max_tensor_bytes": 1 << 60, "max_total_bytes": KIB},
], ids=["tensor", "store", "total"])
def test_a_declared_terabyte_tensor_is_refused_before_it_is_allocated(make_server, bounds):
    server = limited(make_server, **bounds)
    with server.connect() as client:
        client.create_store("net")
    error = raw_push(
        server.address,
        pb.PushRequest(begin=pb.PushBegin(store="net", parameter_count=1)),
        pb.PushRequest(parameter=pb.ParameterSpec(
            name="huge", shape=[1 << 38], dtype="float32", kind="Parameter", has_data=True)),
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_limit_flags_on_paramstore_serve_are_enforced(spawn_server):
    server = spawn_server(None, "--max-parameters", "1", "--max-name-length", "8")
    with connect(server.address) as client:
        store = client.create_store("net")
        with pytest.raises(ResourceExhausted):
            store.push({"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)})
        with pytest.raises(ResourceExhausted):
            store.push({"long-name": np.zeros(1, np.float32)})
        store.push({"a": np.zeros(1, np.float32)})


@pytest.mark.parametrize("step", [-5, -2])
def test_the_server_refuses_a_negative_snapshot_step_itself(server, step):
    with server.connect() as client:
        client.create_store("net")
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ParamStoreStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.TakeSnapshot(pb.TakeSnapshotRequest(store="net", step=step), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "step" in caught.value.details()
        listing = stub.ListSnapshots(pb.ListSnapshotsRequest(store="net"), timeout=30)
        assert list(listing.snapshots) == []


def test_the_sdk_refuses_an_out_of_range_step_before_calling(server):
    with server.connect() as client:
        store = client.create_store("net")
        with pytest.raises(InvalidArgument, match="step"):
            store.snapshot(step=2**63)
        assert store.snapshots() == []
