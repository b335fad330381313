"""Fuzzing the wire with hypothesis: push streams of random names, shapes, dtypes and chunks
(reordered, truncated, duplicated, or a stream cut short by its client; parameters alone or in
batches), and random pulls, listings and snapshot calls, sent with the raw generated stubs to
a `paramstore serve` process. Whatever arrives, the server answers with a proper status (never
UNKNOWN or INTERNAL), a refused call leaves the store exactly as it was, an accepted push
holds exactly the bytes sent, and the process never dies."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from server_process import running_server

from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc

STORE = "fuzz"
# Statuses a well-formed refusal may carry; anything else (UNKNOWN, INTERNAL) is a bug.
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
DTYPES = ["float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool"]
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> Iterator[pb_grpc.ParamStoreStub]:
    """Raw stubs of a server holding store "fuzz" with parameters a (float32, 3x4) and b
    (int64, 5); the server must still be running when the module's tests are done."""
    with running_server(tmp_path_factory.mktemp("fuzz") / "data") as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ParamStoreStub(channel)
            stub.CreateStore(pb.CreateStoreRequest(name=STORE))
            stub.Push(iter(push_stream(STORE, [
                (spec("a", [3, 4], "float32"), [np.arange(12, dtype=np.float32).tobytes()]),
                (spec("b", [5], "int64"), [np.arange(5, dtype=np.int64).tobytes()]),
            ])))
            yield stub
        assert server.process.poll() is None, "the server died:\n" + "".join(server.log)


def spec(name: str, shape: list[int], dtype: str, *, has_data: bool = True,
         alias_of: str = "") -> pb.ParameterSpec:
    return pb.ParameterSpec(name=name, shape=shape, dtype=dtype, dtype_label=dtype,
                            kind="Parameter", has_data=has_data, alias_of=alias_of)


def push_stream(store: str, items) -> list[pb.PushRequest]:
    items = list(items)
    stream = [pb.PushRequest(begin=pb.PushBegin(store=store, parameter_count=len(items)))]
    for declared, chunks in items:
        stream.append(pb.PushRequest(parameter=declared))
        stream.extend(pb.PushRequest(chunk=chunk) for chunk in chunks)
    return stream


def state_of(stub) -> tuple:
    """Everything a client can see of the store: version, listing, ties and data."""
    version = stub.GetStore(pb.GetStoreRequest(name=STORE)).version
    listing = [page.SerializeToString()
               for page in stub.CollectParams(pb.CollectParamsRequest(store=STORE))]
    ties = dict(stub.ListTies(pb.ListTiesRequest(store=STORE)).ties)
    return version, listing, ties, pulled(stub)


def pulled(stub, names=()) -> dict[str, bytes]:
    data: dict[str, bytearray] = {}
    current = None
    for reply in stub.Pull(pb.PullRequest(store=STORE, names=names)):
        kind = reply.WhichOneof("item")
        if kind == "parameter":
            current = data.setdefault(reply.parameter.name, bytearray())
        elif kind == "chunk":
            current += reply.chunk
    return {name: bytes(value) for name, value in data.items()}


def assert_proper_refusal(error: grpc.RpcError) -> None:
    event(f"refused: {error.code().name}")
    assert error.code() in REFUSALS, (error.code(), error.details())
    assert error.details(), "a refusal without a message"


# ---- push streams ------------------------------------------------------------------------------

def mostly(common, rare):
    """`common` seven times in eight, else `rare`: most requests should get far enough to be
    written, the others probe the refusals."""
    return st.integers(0, 7).flatmap(lambda draw: rare if draw == 7 else common)


KNOWN_NAMES = ["a", "b", "c", "d_weight", "e"]
names = mostly(st.sampled_from(KNOWN_NAMES), st.text(max_size=12))
shapes = st.lists(mostly(st.integers(0, 5), st.just(1 << 40)), max_size=3)
dtypes = mostly(st.sampled_from(DTYPES), st.sampled_from(["float128", "", "object", "<f4"]))


@st.composite
def parameters(draw):
    """One declared parameter and its chunks: the right bytes, often cut, reordered,
    duplicated or padded."""
    shape, dtype = draw(shapes), draw(dtypes)
    declared = spec(draw(names), shape, dtype, has_data=True,
                    alias_of=draw(st.sampled_from(["", "", "", "", "a", "zz"])))
    itemsize = np.dtype(dtype).itemsize if dtype in DTYPES else 4
    size = int(np.prod(shape)) * itemsize if all(dim < 1 << 40 for dim in shape) else 64
    data = draw(st.binary(min_size=size, max_size=size))
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=3)))
    chunks = [data[begin:end] for begin, end in zip([0, *cuts], [*cuts, size])]
    mutation = draw(mostly(st.sampled_from(["none", "reorder"]),
                           st.sampled_from(["drop", "duplicate", "extra", "no data"])))
    if mutation == "reorder":
        chunks = draw(st.permutations(chunks))
    elif mutation == "drop" and chunks:
        chunks = chunks[:-1]
    elif mutation == "duplicate" and chunks:
        chunks = [*chunks, chunks[draw(st.integers(0, len(chunks) - 1))]]
    elif mutation == "extra":
        chunks = [*chunks, draw(st.binary(min_size=1, max_size=8))]
    elif mutation == "no data":
        declared.has_data = False
        chunks = draw(st.sampled_from([[], [b"x"]]))
    return declared, list(chunks)


@st.composite
def push_streams(draw):
    store = draw(mostly(st.just(STORE), st.sampled_from(["missing", "../up", ""])))
    stream = push_stream(store, draw(st.lists(parameters(), max_size=3)))
    if len(stream) > 1 and draw(st.booleans()):
        stream = batched(stream, draw(st.integers(1, 3)))
    defect = draw(mostly(st.just("none"),
                         st.sampled_from(["no begin", "two begins", "chunk first"])))
    if defect == "no begin":
        stream = stream[1:]
    elif defect == "two begins":
        stream = [*stream, stream[0]]
    elif defect == "chunk first":
        stream = [stream[0], pb.PushRequest(chunk=b"\x00" * 4), *stream[1:]]
    return stream


def batched(stream: list[pb.PushRequest], size: int) -> list[pb.PushRequest]:
    """The stream with its parameters in ParameterBatch messages of `size` parameters: their
    specs, and their chunks joined (whether or not they add up to what the specs declare)."""
    parameters: list[tuple[pb.ParameterSpec, list[bytes]]] = []
    for request in stream[1:]:
        if request.WhichOneof("item") == "parameter":
            parameters.append((request.parameter, []))
        else:
            parameters[-1][1].append(request.chunk)
    return [stream[0], *(
        pb.PushRequest(batch=pb.ParameterBatch(
            parameters=[declared for declared, _ in parameters[start:start + size]],
            data=b"".join(chunk for _, chunks in parameters[start:start + size]
                          for chunk in chunks)))
        for start in range(0, len(parameters), size))]


def sent_data(stream: list[pb.PushRequest]) -> dict[str, bytes]:
    """name -> the bytes its chunks carried, for the names declared once with data."""
    data: dict[str, bytearray] = {}
    declared_twice = set()
    current = None
    for request in stream:
        kind = request.WhichOneof("item")
        if kind == "parameter":
            name = request.parameter.name
            if name in data:
                declared_twice.add(name)
            data[name] = current = bytearray()
            if not request.parameter.has_data:
                del data[name]
                current = None
        elif kind == "chunk" and current is not None:
            current += request.chunk
        elif kind == "batch":  # its bytes add up: the push was accepted
            offset = 0
            for declared in request.batch.parameters:
                if declared.name in data:
                    declared_twice.add(declared.name)
                size = int(np.prod(declared.shape)) * np.dtype(declared.dtype).itemsize \
                    if declared.has_data else 0
                data[declared.name] = bytearray(request.batch.data[offset:offset + size])
                offset += size
                if not declared.has_data:
                    del data[declared.name]
    return {name: bytes(value) for name, value in data.items() if name not in declared_twice}


@FUZZ
@given(stream=push_streams(), method=st.sampled_from(["Push", "SetData"]))
def test_a_fuzzed_push_is_written_whole_or_refused_with_nothing_changed(stub, stream, method):
    before = state_of(stub)
    try:
        getattr(stub, method)(iter(stream), timeout=30)
    except grpc.RpcError as error:
        assert_proper_refusal(error)
        assert state_of(stub) == before
        return
    event("accepted")
    after = pulled(stub)
    for name, data in sent_data(stream).items():
        assert after[name] == data, name


def cut_short(stream: list[pb.PushRequest], keep: int) -> Iterator[pb.PushRequest]:
    """The stream's first `keep` messages, then the client gives up (its iterator raises)."""
    yield from stream[:keep]
    raise ConnectionAbortedError("the client went away mid-stream")


@FUZZ
@given(stream=push_streams(), fraction=st.floats(0, 1))
def test_a_push_its_client_abandons_mid_stream_changes_nothing(stub, stream, fraction):
    before = state_of(stub)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Push(cut_short(stream, int(len(stream) * fraction)), timeout=30)
    assert raised.value.code() in REFUSALS | {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
    assert state_of(stub) == before


# ---- reads and snapshot calls ------------------------------------------------------------------

texts = mostly(st.sampled_from([*KNOWN_NAMES, "", ".*", "(a|b)", "a{1,3}", "[", "(?P<x>"]),
              st.text(max_size=30))


@FUZZ
@given(names=st.lists(texts, max_size=3), select=texts)
def test_a_fuzzed_read_answers_or_refuses_properly(stub, names, select):
    before = state_of(stub)
    for call in (
        lambda: list(stub.Pull(pb.PullRequest(store=STORE, names=names, select=select))),
        lambda: list(stub.CollectParams(pb.CollectParamsRequest(store=STORE, select=select))),
    ):
        try:
            call()
        except grpc.RpcError as error:
            assert_proper_refusal(error)
    assert state_of(stub) == before


@FUZZ
@given(store=texts, snapshot_id=texts, step=st.integers(-(1 << 63), (1 << 63) - 1),
       metadata=st.dictionaries(texts, texts, max_size=3))
def test_fuzzed_store_and_snapshot_calls_answer_or_refuse_properly(
    stub, store, snapshot_id, step, metadata
):
    before = state_of(stub)
    for call in (
        lambda: stub.GetStore(pb.GetStoreRequest(name=store)),
        lambda: stub.ListSnapshots(pb.ListSnapshotsRequest(store=store)),
        lambda: stub.TakeSnapshot(pb.TakeSnapshotRequest(store=store, step=step,
                                                         metadata=metadata)),
        lambda: stub.RestoreSnapshot(pb.RestoreSnapshotRequest(store=store, id=snapshot_id)),
        lambda: stub.DeleteSnapshot(pb.DeleteSnapshotRequest(store=store, id=snapshot_id)),
    ):
        try:
            call()
        except grpc.RpcError as error:
            assert_proper_refusal(error)
    if store != STORE:
        assert state_of(stub) == before
