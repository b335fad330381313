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
