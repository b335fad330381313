"""Chunks serialized by hand are the protobuf messages any reader expects, and back."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from paramstore.proto import chunks
from paramstore.proto.v1 import paramstore_pb2 as pb


@given(st.binary(max_size=70_000))
def test_an_encoded_chunk_is_the_protobuf_encoding(data):
    assert chunks.encode(memoryview(data)) == pb.PullResponse(chunk=data).SerializeToString()
    assert pb.PushRequest.FromString(chunks.encode(data)).chunk == data


@given(st.binary(max_size=70_000))
def test_a_lone_chunk_is_read_as_a_view_of_its_bytes(data):
    received = chunks.deserializer(pb.PullResponse)(chunks.encode(data))
    assert received.WhichOneof("item") == "chunk"
    assert bytes(received.chunk) == data


def test_other_messages_are_left_to_protobuf():
    message = pb.PullResponse(parameter=pb.ParameterSpec(name="w", shape=[2, 3]))
    received = chunks.deserializer(pb.PullResponse)(message.SerializeToString())
    assert received == message


def test_a_chunk_followed_by_another_field_is_parsed_whole():
    raw = chunks.encode(b"abc") + pb.PushRequest(begin=pb.PushBegin(store="s")).SerializeToString()
    received = chunks.deserializer(pb.PushRequest)(raw)
    assert received.WhichOneof("item") == "begin"


def test_serialize_passes_encoded_chunks_through():
    encoded = chunks.encode(np.arange(4, dtype=np.uint8).data)
    assert chunks.serialize(encoded) is encoded
    assert chunks.serialize(pb.PullBegin(version=3)) == pb.PullBegin(version=3).SerializeToString()


def _spec(name, size):
    return pb.ParameterSpec(name=name, shape=[size], dtype="float32", dtype_label="float32",
                            kind="Parameter", has_data=True)


def _read_back(messages):
    """Serialize and deserialize as the wire would, then expand the batches."""
    deserialize = chunks.deserializer(pb.PullResponse)
    return list(chunks.expand(deserialize(m) for m in messages))


def _items(sizes):
    """Float32 parameters p0, p1, ... of `sizes` elements, each with its spec."""
    return [(_spec(f"p{i}", size), np.arange(size, dtype=np.float32) + i)
            for i, size in enumerate(sizes)]


def _written(items):
    return list(chunks.parameter_messages(
        (spec.SerializeToString(), data) for spec, data in items))


@given(st.lists(st.integers(min_value=0, max_value=70_000), max_size=40))
def test_batched_parameters_read_back_as_specs_and_their_bytes(sizes):
    items = _items(sizes)
    messages = _written(items)
    assert all(len(m) < 2 * chunks.CHUNK_BYTES for m in messages)
    back = _read_back(messages)
    got, current = {}, None
    for message in back:
        if message.WhichOneof("item") == "parameter":
            current = message.parameter.name
            got[current] = b""
        else:
            got[current] += bytes(message.chunk)
    assert list(got) == [spec.name for spec, _ in items]
    for spec, data in items:
        assert got[spec.name] == data.tobytes()


def test_many_small_parameters_take_few_messages():
    items = [(_spec(f"p{i}", 4).SerializeToString(), np.zeros(4, np.float32))
             for i in range(10_000)]
    messages = list(chunks.parameter_messages(items))
    assert len(messages) < 20
    assert len(list(chunks.parameter_messages(items, batches=False))) == 20_000


def test_bytes_a_batch_cannot_place_come_out_as_a_stray_chunk():
    batch = pb.PullResponse(batch=pb.ParameterBatch(parameters=[_spec("w", 1)], data=b"\0" * 6))
    kinds = [m.WhichOneof("item") for m in chunks.expand([batch])]
    assert kinds == ["parameter", "chunk", "chunk"]


def test_push_and_pull_messages_number_their_fields_alike():
    for message in (pb.PushRequest, pb.PullResponse):
        fields = message.DESCRIPTOR.fields_by_name
        assert (fields["parameter"].number, fields["chunk"].number, fields["batch"].number) == (
            chunks.PARAMETER_FIELD, chunks.CHUNK_FIELD, chunks.BATCH_FIELD)


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=30))
def test_a_written_batch_is_the_batch_protobuf_reads_in_either_stream(sizes):
    items = _items(sizes)
    messages = _written(items)
    expected = pb.ParameterBatch(parameters=[spec for spec, _ in items],
                                 data=b"".join(data.tobytes() for _, data in items))
    assert len(messages) == (1 if items else 0)
    for message in messages:
        assert pb.PushRequest.FromString(message).batch == expected
        assert pb.PullResponse.FromString(message).batch == expected
