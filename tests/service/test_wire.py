"""The one reader of a pull stream: order and byte counts checked, whatever the server sends."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paramstore.proto import wire
from paramstore.proto.v1 import paramstore_pb2 as pb


def begin():
    return pb.PullResponse(begin=pb.PullBegin(version=7, data_bytes=8))


def spec(name, shape=(2,), has_data=True):
    return pb.PullResponse(parameter=pb.ParameterSpec(name=name, shape=shape, dtype="float32",
                                                      has_data=has_data))


def chunk(size):
    return pb.PullResponse(chunk=b"\1" * size)


def read(stream):
    written = {}

    def start(parameter):
        written[parameter.name] = b""
        return lambda data: written.__setitem__(parameter.name,
                                                written[parameter.name] + bytes(data))

    return wire.read_pull(stream, start), written


def test_a_well_formed_stream_is_read_whole():
    got, written = read([begin(), spec("a"), chunk(5), chunk(3), spec("b", has_data=False)])
    assert got.version == 7 and written == {"a": b"\1" * 8, "b": b""}


@pytest.mark.parametrize("stream, message", [
    ([], "did not start"),
    ([spec("a")], "did not start"),
    ([begin(), spec("a"), chunk(4)], "4 of the 8 bytes of 'a'"),
    ([begin(), spec("a"), chunk(9)], "more bytes"),
    ([begin(), chunk(1)], "more bytes"),
    ([begin(), spec("a", has_data=False), chunk(1)], "more bytes"),
    ([begin(), spec("a"), chunk(4), spec("b", has_data=False)], "4 of the 8 bytes of 'a'"),
    ([begin(), begin()], "second PullBegin"),
])
def test_a_broken_stream_is_a_stream_error(stream, message):
    with pytest.raises(wire.StreamError, match=message):
        read(stream)


@given(st.lists(st.one_of(st.builds(begin), st.builds(spec, st.sampled_from("ab"),
                                                       st.lists(st.integers(0, 3), max_size=2),
                                                       st.booleans()),
                          st.builds(chunk, st.integers(0, 20))), max_size=8))
def test_any_stream_is_read_or_refused_with_a_stream_error(stream):
    try:
        _, written = read(stream)
    except wire.StreamError:
        return
    last = {message.parameter.name: message.parameter for message in stream
            if message.WhichOneof("item") == "parameter"}
    for name, parameter in last.items():
        assert len(written[name]) == (wire.data_bytes(parameter) if parameter.has_data else 0)
