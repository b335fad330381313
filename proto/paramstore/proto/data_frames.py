"""The framing of the data channel, for the server and the SDK (see `DataStep` and `DataStatus`
in the .proto): a ticket of `TICKET_BYTES`, then messages each after a little-endian uint32
length, and raw tensor bytes whose sizes both sides derive from the step's specs.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

TICKET_BYTES = 32
MAX_MESSAGE_BYTES = 1 << 20  # a header or a status; far above thousands of parameters' specs
LENGTH = struct.Struct("<I")
Parsed = TypeVar("Parsed", bound=Message)


class Ended(ConnectionError):
    """The peer closed the connection before every byte expected came."""


class Malformed(ValueError):
    """A message over `MAX_MESSAGE_BYTES`, or bytes that are not the message expected."""


def send_message(stream: socket.socket, message: Message) -> None:
    data = message.SerializeToString()
    stream.sendall(LENGTH.pack(len(data)) + data)


def read_into(stream: socket.socket, view: memoryview, deadline: float | None = None) -> None:
    """Fill `view` from `stream` (each read within the socket's timeout). Raises `Ended`,
    `TimeoutError` (a read timed out, or `deadline` passed before the last byte came)."""
    filled = 0
    while filled < len(view):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the peer sent too slowly")
        count = stream.recv_into(view[filled:])
        if count == 0:
            raise Ended(f"the peer closed the connection after {filled} of {len(view)} bytes")
        filled += count


def message_length(raw: bytes | bytearray) -> int:
    """The length a message's prefix announces. Raises `Malformed` when over the bound."""
    (length,) = LENGTH.unpack(raw)
    if length > MAX_MESSAGE_BYTES:
        raise Malformed(f"a data channel message of {length} bytes is over the "
                        f"{MAX_MESSAGE_BYTES}-byte limit")
    return int(length)


def parse(kind: type[Parsed], data: bytes | bytearray) -> Parsed:
    """`data` as a message of `kind`. Raises `Malformed`."""
    message = kind()
    try:
        message.ParseFromString(bytes(data))
    except DecodeError:
        raise Malformed(f"a data channel message is not a {kind.DESCRIPTOR.full_name} "
                        "message") from None
    return message


def read_message(stream: socket.socket, kind: type[Parsed], deadline: float | None = None
                 ) -> Parsed:
    """The next message, of `kind`. Raises `Ended`, `TimeoutError`, `Malformed`."""
    raw = bytearray(LENGTH.size)
    read_into(stream, memoryview(raw), deadline)
    body = bytearray(message_length(raw))
    read_into(stream, memoryview(body), deadline)
    return parse(kind, body)
