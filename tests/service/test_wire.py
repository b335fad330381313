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


def batch(sizes, extra=0):
    """A batch of float32 parameters "p0", "p1", ... of `sizes` elements (None: no data),
    its data `extra` bytes longer (or shorter) than they hold."""
    specs = [pb.ParameterSpec(name=f"p{index}", shape=[size or 0], dtype="float32",
                              has_data=size is not None) for index, size in enumerate(sizes)]
    data = b"\2" * max(0, 4 * sum(size or 0 for size in sizes) + extra)
    return pb.PullResponse(batch=pb.ParameterBatch(parameters=specs, data=data))


def read(stream):
    written = {}

    def start(parameter, whole):
        written[parameter.name] = b"" if whole is None else bytes(whole)
        return lambda data: written.__setitem__(parameter.name,
                                                written[parameter.name] + bytes(data))

    return wire.read_pull(stream, start), written


def test_a_well_formed_stream_is_read_whole():
    got, written = read([begin(), spec("a"), chunk(5), chunk(3), spec("b", has_data=False)])
    assert got.version == 7 and written == {"a": b"\1" * 8, "b": b""}


def test_a_batch_gives_each_parameter_its_bytes_whole():
    _, written = read([begin(), batch([1, None, 2]), spec("a"), chunk(8)])
    assert written == {"p0": b"\2" * 4, "p1": b"", "p2": b"\2" * 8, "a": b"\1" * 8}


def test_a_step_stops_after_its_count_inside_a_batch():
    stream = iter([begin(), batch([1, 1, 1]), chunk(1)])
    written = {}
    wire.read_pull(stream, lambda parameter, whole: written.setdefault(parameter.name, whole),
                   count=2)
    assert list(written) == ["p0", "p1"] and next(stream).WhichOneof("item") == "chunk"


@pytest.mark.parametrize("stream, message", [
    ([], "did not start"),
    ([spec("a")], "did not start"),
    ([begin(), spec("a"), chunk(4)], "4 of the 8 bytes of 'a'"),
    ([begin(), spec("a"), chunk(9)], "more bytes"),
    ([begin(), chunk(1)], "more bytes"),
    ([begin(), spec("a", has_data=False), chunk(1)], "more bytes"),
    ([begin(), spec("a"), chunk(4), spec("b", has_data=False)], "4 of the 8 bytes of 'a'"),
    ([begin(), begin()], "second PullBegin"),
    ([begin(), batch([2, 3], extra=-1)], "11 of the 12 bytes of 'p1'"),
    ([begin(), batch([2, None], extra=1)], "1 bytes more than the parameters of its batch"),
    ([begin(), spec("a"), chunk(4), batch([1])], "4 of the 8 bytes of 'a'"),
    ([begin(), batch([1]), chunk(1)], "more bytes"),
])
def test_a_broken_stream_is_a_stream_error(stream, message):
    with pytest.raises(wire.StreamError, match=message):
        read(stream)


@given(st.lists(st.one_of(st.builds(begin), st.builds(spec, st.sampled_from("ab"),
                                                       st.lists(st.integers(0, 3), max_size=2),
                                                       st.booleans()),
                          st.builds(chunk, st.integers(0, 20)),
                          st.builds(batch, st.lists(st.one_of(st.none(), st.integers(0, 3)),
                                                    max_size=3),
                                    st.integers(-4, 4))), max_size=8))
def test_any_stream_is_read_or_refused_with_a_stream_error(stream):
    try:
        _, written = read(stream)
    except wire.StreamError:
        return
    last = {}
    for message in stream:
        kind = message.WhichOneof("item")
        if kind == "parameter":
            last[message.parameter.name] = message.parameter
        elif kind == "batch":
            last.update((parameter.name, parameter) for parameter in message.batch.parameters)
    for name, parameter in last.items():
        assert len(written[name]) == (wire.data_bytes(parameter) if parameter.has_data else 0)
