"""Reads of a store over the data channel: a big pull's tensor bytes without gRPC.

gRPC in Python wants a `bytes` object per message, so a Pull costs the server a copy of every
byte it sends, and the client another; at best it runs at about 0.8 of bare gRPC. Over the
data channel the server `sendall`s straight from the store's arrays, and the client receives
straight into its parameters.

A connection admitted with a READ ticket (`OpenDataRead`) carries one `DataRead`: the version
the reader listed and the names it wants. Store states are immutable, so the bytes sent are
exactly that version's; a store written since is refused with `StoreChanged` (ABORTED) before a
byte is sent, and the reader lists it again. A reader that stops reading is cut off as a
stalled writer is: each send within the read timeout, all of them at `MIN_BYTES_PER_SECOND`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np

from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server import failures
from paramstore.server.data_tickets import Ticket
from paramstore.server.errors import FailedPrecondition, InvalidArgument, StoreChanged, StoreError
from paramstore.server.registry import StoreRegistry

if TYPE_CHECKING:
    from paramstore.server.data_channel import DataLimits

METHOD = "DataRead"  # a read's name in logs and metrics
SEND_BYTES = 8 << 20  # the slice of a tensor sent at once, between two checks of the deadline
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def tensors_at(registry: StoreRegistry, ticket: Ticket, read: pb.DataRead) -> list[np.ndarray]:
    """The arrays `read` names, from the state at its version. Raises `InvalidArgument` (a store
    other than the ticket's), the registry's errors (`StoreNotFound`, `NotOwner`, ...),
    `StoreChanged`, `ParameterNotFound`, `FailedPrecondition` (a name without data)."""
    if read.store != ticket.store:
        raise InvalidArgument(f"this data connection reads store {ticket.store!r}, "
                              f"not {read.store!r}")
    state = registry.get(read.store).state()
    if state.version != read.version:
        raise StoreChanged(f"store {read.store!r} is at version {state.version}, not "
                           f"{read.version}: list it again")
    arrays = []
    for name in read.names:
        state.info(name)  # ParameterNotFound
        array = state.array(name)
        if array is None:
            raise FailedPrecondition(f"parameter {name!r} holds no data to read")
        arrays.append(array)
    return arrays


def serve_read(stream: socket.socket, ticket: Ticket, registry: StoreRegistry,
               limits: DataLimits, record: Callable[[str, str, float], None]) -> None:
    """Read one `DataRead` from `stream`, answer it and send its tensors; `record(METHOD,
    status name, start)` as a step's. Raises `OSError` and `TimeoutError` when the
    connection fails or stalls."""
    from paramstore.server.data_channel import MIN_BYTES_PER_SECOND, _status

    started, status = time.perf_counter(), "CANCELLED"  # unless it is answered
    try:
        deadline = time.monotonic() + limits.read_timeout
        refusal: pb.DataStatus | None = None
        try:
            read = frames.read_message(stream, pb.DataRead, deadline)
            arrays = tensors_at(registry, ticket, read)
        except frames.Malformed as error:
            refusal = _status(InvalidArgument(str(error)))
        except StoreError as error:
            refusal = _status(error)
        except (frames.Ended, OSError):
            raise
        except Exception as error:  # a bug: answered as a gRPC call's would be
            answer = failures.unexpected(METHOD, error)
            refusal = pb.DataStatus(code=answer.code.value[0], error_kind=answer.kind,
                                    message=answer.message)
        if refusal is not None:
            frames.send_message(stream, refusal)
            status = _CODES[refusal.code].name
            return
        frames.send_message(stream, pb.DataStatus())
        total = sum(array.nbytes for array in arrays)
        deadline = time.monotonic() + limits.read_timeout + total / MIN_BYTES_PER_SECOND
        for array in arrays:
            data = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data
            for begin in range(0, len(data), SEND_BYTES):
                if time.monotonic() > deadline:
                    raise TimeoutError("the reader took the tensors too slowly")
                stream.sendall(data[begin:begin + SEND_BYTES])
        status = "OK"
    finally:
        record(METHOD, status, started)
