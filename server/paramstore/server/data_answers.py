"""What the data channel's connections share, steps and transfers alike: how fast a body must
come, how an error is answered, and how a refused sender is let read its answer."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

import grpc

from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.errors import NotOwner, StoreError

MIN_BYTES_PER_SECOND = 1 << 20  # a body slower than this is a stall, not a network


def body_deadline(read_timeout: float, total: int) -> float:
    """When a body of `total` bytes must have moved, at the least rate."""
    return time.monotonic() + read_timeout + total / MIN_BYTES_PER_SECOND


def status(error: StoreError) -> pb.DataStatus:
    """The status a gRPC call would end with for `error` (`servicer.STATUS_OF`)."""
    from paramstore.server.servicer import STATUS_OF  # the servicer imports the data channel

    kind = next(cls for cls in type(error).__mro__ if cls in STATUS_OF or cls is StoreError)
    code = STATUS_OF.get(kind, grpc.StatusCode.FAILED_PRECONDITION)
    return pb.DataStatus(code=code.value[0], message=str(error), error_kind=kind.__name__,
                         owner=error.owner if isinstance(error, NotOwner) else "")


def drain(stream: socket.socket, seconds: float) -> None:
    """Read and drop what the peer still sends (the rest of a refused body) for up to
    `seconds`, so that it reads the status rather than a reset connection."""
    with contextlib.suppress(OSError, ssl.SSLError):
        if not isinstance(stream, ssl.SSLSocket):
            stream.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        sink = bytearray(1 << 16)
        while time.monotonic() < deadline and stream.recv_into(sink):
            pass
