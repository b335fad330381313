"""Reads and pushes over the data channel: a big pull's or push's tensor bytes without gRPC.

gRPC in Python wants a `bytes` object per message, so a Pull costs the server a copy of every
byte it sends, and the client another; at best it runs at about 0.8 of bare gRPC. Over the
data channel the server `sendall`s straight from the store's arrays, and the client receives
straight into its parameters.

A connection admitted with a READ ticket (`OpenDataRead`) carries one `DataRead`: the version
the reader listed and the names it wants. Store states are immutable, so the bytes sent are
exactly that version's; a store written since is refused with `StoreChanged` (ABORTED) before a
byte is sent, and the reader lists it again. A reader that stops reading is cut off as a
stalled writer is: each send within the read timeout, all of them at `MIN_BYTES_PER_SECOND`.

A connection admitted with a WRITE ticket (`OpenDataWrite`) carries one push: a `DataWrite`
(Push's PushBegin and specs), then the raw bytes. Its parameters are checked and their
buffers taken from the in-flight byte budget as a data channel step's are, before a byte of
the body is read, and it is one commit of the store, as a Push: refused or cut short, it writes
nothing.
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
from paramstore.server import data_answers as answers
from paramstore.server import failures, validation
from paramstore.server.data_tickets import Ticket, TicketKind
from paramstore.server.errors import FailedPrecondition, InvalidArgument, StoreChanged, StoreError
from paramstore.server.registry import StoreRegistry

if TYPE_CHECKING:
    from paramstore.server.data_channel import DataLimits
    from paramstore.server.servicer import ParamStoreServicer

READ, WRITE = "DataRead", "DataWrite"  # their names in logs and metrics
SEND_BYTES = 8 << 20  # the slice of a tensor sent at once, between two checks of the deadline
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def tensors_at(registry: StoreRegistry, ticket: Ticket, read: pb.DataRead) -> list[np.ndarray]:
    """The arrays `read` names, from the state at its version. Raises `InvalidArgument` (a store
    other than the ticket's, a name given twice), the registry's errors (`StoreNotFound`,
    `NotOwner`, ...), `StoreChanged`, `ParameterNotFound`, `FailedPrecondition` (a name
    without data)."""
    if read.store != ticket.store:
        raise InvalidArgument(f"this data connection reads store {ticket.store!r}, "
                              f"not {read.store!r}")
    validation.distinct("the read", read.names)  # as a Pull: each tensor sent once a request
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


def serve(stream: socket.socket, ticket: Ticket, servicer: ParamStoreServicer,
          limits: DataLimits, record: Callable[[str, str, float], None]) -> None:
    """Serve the one read or push a connection admitted with `ticket` carries; `record(method,
    status name, start)` as a step's. Raises `OSError` and `TimeoutError` when the connection
    fails or stalls."""
    method = READ if ticket.kind is TicketKind.READ else WRITE
    started, status = time.perf_counter(), "CANCELLED"  # unless it is answered
    try:
        deadline = time.monotonic() + limits.read_timeout
        try:
            if ticket.kind is TicketKind.READ:
                _read(stream, ticket, servicer.registry, limits,
                      frames.read_message(stream, pb.DataRead, deadline))
            else:
                _write(stream, ticket, servicer, limits,
                       frames.read_message(stream, pb.DataWrite, deadline))
            status = "OK"
            return
        except frames.Malformed as error:
            refusal = answers.status(InvalidArgument(str(error)))
        except StoreError as error:
            refusal = answers.status(error)
        except OSError:  # the connection failed or stalled: nobody to answer
            raise
        except Exception as error:  # a bug: answered as a gRPC call's would be
            answer = failures.unexpected(method, error)
            refusal = pb.DataStatus(code=answer.code.value[0], error_kind=answer.kind,
                                    message=answer.message)
        frames.send_message(stream, refusal)
        status = _CODES[refusal.code].name
        answers.drain(stream, limits.read_timeout)  # a writer reads the status, not a reset
    finally:
        record(method, status, started)


def _read(stream: socket.socket, ticket: Ticket, registry: StoreRegistry, limits: DataLimits,
          read: pb.DataRead) -> None:
    """Answer `read` and send its tensors (refusals raised before a byte is sent)."""
    arrays = tensors_at(registry, ticket, read)
    frames.send_message(stream, pb.DataStatus())
    total = sum(array.nbytes for array in arrays)
    deadline = answers.body_deadline(limits.read_timeout, total)
    for array in arrays:
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data
        for begin in range(0, len(data), SEND_BYTES):
            if time.monotonic() > deadline:
                raise TimeoutError("the reader took the tensors too slowly")
            stream.sendall(data[begin:begin + SEND_BYTES])


def _write(stream: socket.socket, ticket: Ticket, servicer: ParamStoreServicer,
           limits: DataLimits, write: pb.DataWrite) -> None:
    """Receive `write`'s tensors and push them in one commit, as a Push; answer it."""
    begin = write.begin
    if begin.store != ticket.store:
        raise InvalidArgument(f"this data connection pushes into store {ticket.store!r}, "
                              f"not {begin.store!r}")
    if begin.HasField("compression") or begin.shared_memory:
        raise InvalidArgument("a push carries its parameters' raw bytes: no compression, "
                              "no shared memory")
    validation.prefix(begin.prefix)
    validation.version(begin.expected_version)

    def push() -> pb.PushResponse:
        with servicer.inflight.account() as take:  # every buffer taken before a body byte
            items, buffers = servicer.data_step_items(begin, list(write.parameters), take)
            total = sum(buffer.nbytes for buffer in buffers)
            deadline = answers.body_deadline(limits.read_timeout, total)
            for buffer in buffers:
                frames.read_into(stream, buffer.reshape(-1).view(np.uint8).data, deadline)
            state = servicer.registry.get(begin.store).push(
                begin.prefix, items(), expected_version=begin.expected_version)
        return pb.PushResponse(version=state.version, data_bytes=total)

    # Under the ticket's request id: a client whose connection broke sends the push again as
    # a Push under that id, which then answers with this one's reply instead of applying twice.
    reply = servicer.request_ids.run("Push", ticket.request_id, push)
    frames.send_message(stream, pb.DataStatus())
    frames.send_message(stream, reply)
