"""Many small parameters in ParameterBatch messages, against a `paramstore serve` process: they
round-trip bit-exact through the SDK, and a batch that breaks a rule anywhere, even deep in a
big one, is refused with the right status and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import running_server

from paramstore.client import InvalidArgument
from paramstore.dtypes import numpy_dtype
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc

pytest_plugins = ("server_fixtures",)

STORE = "batches"
COUNT = 5_000  # parameters in the big batch: its middle one is the bad one
DTYPES = ["bool", "uint8", "int8", "int16", "float16", "bfloat16", "int32", "float32", "int64",
          "float64"]


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.ParamStoreStub]:
    """Raw stubs of a server holding store "batches" with COUNT float32 parameters p0, p1, ...
    of 4 elements; the server must still be running when the module's tests are done."""
    with running_server(tmp_path_factory.mktemp("batches") / "data") as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ParamStoreStub(channel)
            stub.CreateStore(pb.CreateStoreRequest(name=STORE))
            stub.Push(iter([begin(COUNT),
                            batch([spec(f"p{index}") for index in range(COUNT)])]))
            yield stub
        assert server.process.poll() is None, "the server died:\n" + "".join(server.log)


def begin(count: int) -> pb.PushRequest:
    return pb.PushRequest(begin=pb.PushBegin(store=STORE, parameter_count=count))


def spec(name: str, shape: tuple[int, ...] = (4,), dtype: str = "float32",
         **fields: object) -> pb.ParameterSpec:
    values = {"dtype_label": dtype, "kind": "Parameter", "has_data": True, **fields}
    return pb.ParameterSpec(name=name, shape=shape, dtype=dtype, **values)


def batch(specs: list[pb.ParameterSpec], extra: int = 0) -> pb.PushRequest:
    """A batch of `specs` with data of 2.0s, `extra` bytes longer (or shorter) than they hold."""
    size = sum(4 * int(np.prod(each.shape)) for each in specs if each.has_data) + extra
    data = np.full(max(size, 0) // 4 + 1, 2.0, np.float32).tobytes()[:max(size, 0)]
    return pb.PushRequest(batch=pb.ParameterBatch(parameters=specs, data=data))


def state_of(stub: pb_grpc.ParamStoreStub) -> tuple[int, list[bytes]]:
    """The store's version and every reply of a pull of all of it, as bytes."""
    version = stub.GetStore(pb.GetStoreRequest(name=STORE)).version
    return version, [reply.SerializeToString()
                     for reply in stub.Pull(pb.PullRequest(store=STORE, batches=True))]


def middle(bad: pb.ParameterSpec) -> list[pb.ParameterSpec]:
    """COUNT - 1 good re-pushed specs with `bad` in the middle."""
    specs = [spec(f"p{index}") for index in range(COUNT)]
    specs[COUNT // 2] = bad
    return specs


@pytest.mark.parametrize("bad, code, message", [
    (spec("p\x07bell"), grpc.StatusCode.INVALID_ARGUMENT, "control character"),
    (spec("p2500", dtype="float128"), grpc.StatusCode.INVALID_ARGUMENT, "unsupported dtype"),
    (spec("p2500", kind="Buffer"), grpc.StatusCode.INVALID_ARGUMENT, "kind 'Buffer'"),
    (spec("p2500", dtype_label="\x1b[2J"), grpc.StatusCode.INVALID_ARGUMENT, "dtype label"),
    (spec("p2500", alias_of="p0"), grpc.StatusCode.INVALID_ARGUMENT, "it is an alias"),
    (spec("p2500", shape_unknown=True), grpc.StatusCode.INVALID_ARGUMENT, "shape is unknown"),
    (spec("p2500", shape=(1 << 40, 1 << 40)), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "limit per tensor"),
    (spec("p2500", shape=(2, 2)), grpc.StatusCode.FAILED_PRECONDITION, "has shape (4,)"),
    (spec("p2500", dtype="int32"), grpc.StatusCode.FAILED_PRECONDITION, "holds float32"),
    (spec("p0"), grpc.StatusCode.INVALID_ARGUMENT, "'p0' appears twice"),
])
def test_a_bad_spec_in_the_middle_of_a_big_batch_is_refused_and_changes_nothing(
    stub, bad, code, message
):
    before = state_of(stub)
    specs = middle(bad)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Push(iter([begin(COUNT), batch(specs)]))
    assert refused.value.code() == code and message in refused.value.details()
    assert state_of(stub) == before


@pytest.mark.parametrize("extra, message", [
    (-1, "'p4999' received 15 of its 16 bytes"),
    (1, "1 more than its parameters hold"),
])
def test_a_batch_whose_bytes_do_not_add_up_is_refused_and_changes_nothing(stub, extra, message):
    before = state_of(stub)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Push(iter([begin(COUNT), batch(middle(spec("p2500")), extra=extra)]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()
    assert state_of(stub) == before


def test_a_batch_beyond_the_announced_count_is_refused_and_changes_nothing(stub):
    before = state_of(stub)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Push(iter([begin(COUNT - 1), batch(middle(spec("p2500")))]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"more parameters than the {COUNT - 1}" in refused.value.details()
    assert state_of(stub) == before


def test_a_big_batch_of_new_values_is_written_whole(stub):
    stub.Push(iter([begin(COUNT), batch([spec(f"p{index}") for index in range(COUNT)])]))
    for reply in stub.Pull(pb.PullRequest(store=STORE, names=["p0", "p4999"])):
        if reply.WhichOneof("item") == "chunk":
            assert np.frombuffer(reply.chunk, np.float32).tolist() == [2.0] * 4


# ---- through the SDK -----------------------------------------------------------------------------

small_arrays = st.tuples(
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 3), max_size=3),
).flatmap(lambda drawn: st.binary(
    min_size=_nbytes(*drawn), max_size=_nbytes(*drawn),
).map(lambda raw: _array(raw, *drawn)))


def _nbytes(dtype: str, shape: list[int]) -> int:
    return int(np.prod(shape)) * (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize)


def _array(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    """Random bytes as an array: every bit pattern, NaN payloads included."""
    return np.frombuffer(raw, numpy_dtype(dtype)).reshape(shape).copy()


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(arrays=st.lists(small_arrays, min_size=1, max_size=300))
def test_random_small_parameters_round_trip_bit_exact(remote, arrays):
    store = remote.create_store("roundtrip")
    pushed = {f"layer{index}_weight": array for index, array in enumerate(arrays)}
    store.push(pushed)
    local = {name: np.zeros_like(array) for name, array in pushed.items()}
    store.pull(local)
    for name, array in pushed.items():
        assert local[name].dtype == array.dtype and local[name].shape == array.shape
        assert local[name].tobytes() == array.tobytes(), name
    remote.delete_store("roundtrip")


def test_a_pull_of_many_names_with_a_mismatch_in_a_batch_writes_nothing(remote):
    """Too many names for the listing check: the pull itself finds the mismatch."""
    store = remote.create_store("mismatch")
    pushed = {f"block{index // 100}_dense{index % 100}_weight": np.full(4, index, np.float32)
              for index in range(2_000)}
    store.push(pushed)
    local = {name: np.zeros(4, np.float32) for name in pushed}
    local["block19_dense99_weight"] = np.zeros(5, np.float32)  # the last one disagrees
    with pytest.raises(Exception, match="has shape"):
        store.pull(local)
    assert all(not array.any() for array in local.values())


def test_a_push_of_a_bad_name_among_many_is_refused_through_the_sdk(remote):
    store = remote.create_store("sdk-bad")
    pushed = {f"p{index}": np.ones(4, np.float32) for index in range(3_000)}
    pushed["p\x00nul"] = np.ones(4, np.float32)
    with pytest.raises(InvalidArgument, match="control character"):
        store.push(pushed)
    assert store.info().parameter_count == 0
