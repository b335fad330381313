"""Tensor chunks on the wire without protobuf's extra copies, for the server and the SDK.

A message whose only field is a `bytes chunk` is the field's tag, the length as a varint, and
the bytes. `encode` builds exactly those bytes (a valid `PushRequest`/`PullResponse` for any
protobuf reader); `deserializer` reads such a message as a view of the received buffer and
leaves every other message to protobuf. Together they save a copy of every byte at both ends.

Small parameters travel in `ParameterBatch` messages: `parameter_messages` writes a stream's
parameters (batches for the small ones, a spec and its chunks for the others) and `expand`
reads a stream as if every batch were its specs and chunks, so readers handle one form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from paramstore.dtypes import numpy_dtype

# Measured on loopback: throughput rises up to 1 MiB chunks and is flat beyond; 1 MiB also stays
# well under gRPC's default 4 MiB message limit, so grpcurl and other clients work.
CHUNK_BYTES = 1 << 20
BATCH_PARAMETER_BYTES = 64 << 10  # parameters of at most this many bytes travel in batches
CHUNK_FIELD = 3  # `bytes chunk = 3` in PushRequest and PullResponse
_TAG = bytes([CHUNK_FIELD << 3 | 2])  # wire type 2: length-delimited


def encode(data: memoryview | bytes) -> bytes:
    """The serialized message `{chunk: data}` (one copy of `data`)."""
    length = len(data)
    header = bytearray(_TAG)
    while True:
        byte = length & 0x7F
        length >>= 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            break
    return b"".join((header, data))


class RawChunk:
    """A received `{chunk: ...}` message: `.chunk` is a view of the received bytes."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: memoryview) -> None:
        self.chunk = chunk

    def WhichOneof(self, group: str) -> str:  # protobuf's name: callers treat both alike
        return "chunk"


def serialize(message: Any) -> bytes:
    """Serializer passing pre-encoded chunks through and serializing messages."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """Deserializer giving a `RawChunk` for a lone chunk and a `message_class` otherwise."""

    def deserialize(raw: bytes) -> Any:
        view = _lone_chunk(raw)
        return message_class.FromString(raw) if view is None else RawChunk(view)

    return deserialize


def _lone_chunk(raw: bytes) -> memoryview | None:
    if not raw or raw[0] != _TAG[0]:
        return None
    length, shift, position = 0, 0, 1
    while position < len(raw) and shift < 64:
        byte = raw[position]
        length |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            break
        shift += 7
    else:
        return None
    return memoryview(raw)[position:] if position + length == len(raw) else None


class RawParameter:
    """A parameter spec read out of a batch, answering like a `{parameter: ...}` message."""

    __slots__ = ("parameter",)

    def __init__(self, parameter: Any) -> None:
        self.parameter = parameter

    def WhichOneof(self, group: str) -> str:
        return "parameter"


def expand(messages: Iterable[Any], data_inline: bool = True) -> Iterator[Any]:
    """`messages` with each `batch` spread into its specs, each followed (when it has data) by
    one chunk: a view of the batch's bytes. Other messages pass through. Without
    `data_inline` (a shared-memory PushPull: the data is in the segment) batches hold specs
    only."""
    for message in messages:
        if message.WhichOneof("item") != "batch":
            yield message
            continue
        data = memoryview(message.batch.data)
        offset = 0
        for spec in message.batch.parameters:
            yield RawParameter(spec)
            if spec.has_data and data_inline:
                size = spec_bytes(spec)
                yield RawChunk(data[offset:offset + size])
                offset += size
        if offset != len(data):
            # A reader sees a chunk it cannot place and reports it.
            yield RawChunk(data[offset:])


def spec_bytes(spec: Any) -> int:
    """The bytes of the data a spec declares."""
    count = 1
    for dim in spec.shape:
        count *= int(dim)
    return count * numpy_dtype(spec.dtype).itemsize


def parameter_messages(
    make: Callable[..., Any],
    items: Iterable[tuple[Any, np.ndarray | None]],
    batches: bool = True,
    sent: Callable[[int], None] | None = None,
) -> Iterator[Any]:
    """The messages carrying `items` (spec, data or None) in a push or pull stream built with
    `make` (`PushRequest` or `PullResponse`): with `batches`, runs of parameters of at most
    `BATCH_PARAMETER_BYTES` as `ParameterBatch` messages of under `CHUNK_BYTES`; the others as
    their spec and pre-serialized chunks. `sent(n)` is told each n data bytes written."""
    specs: list[Any] = []
    pieces: list[memoryview] = []
    size = 0
    for spec, data in items:
        flat = None if data is None else memoryview(
            np.ascontiguousarray(data).reshape(-1).view(np.uint8).data)
        nbytes = 0 if flat is None else len(flat)
        if batches and nbytes <= BATCH_PARAMETER_BYTES:
            cost = nbytes + spec.ByteSize() + 8
            if specs and size + cost > CHUNK_BYTES:
                yield _batch(make, specs, pieces, sent)
                specs, pieces, size = [], [], 0
            specs.append(spec)
            if flat is not None:
                pieces.append(flat)
            size += cost
            continue
        if specs:
            yield _batch(make, specs, pieces, sent)
            specs, pieces, size = [], [], 0
        yield make(parameter=spec)
        if flat is not None:
            for start in range(0, len(flat), CHUNK_BYTES):
                piece = flat[start:start + CHUNK_BYTES]
                if sent is not None:
                    sent(len(piece))
                yield encode(piece)  # a serialized {chunk: piece} message
    if specs:
        yield _batch(make, specs, pieces, sent)


def _batch(make: Callable[..., Any], specs: list[Any], pieces: list[memoryview],
           sent: Callable[[int], None] | None) -> Any:
    data = b"".join(pieces)
    if sent is not None:
        sent(len(data))
    return make(batch={"parameters": specs, "data": data})
