"""The data channel: training workers' PushPull steps over a plain TCP (or TLS) connection.

gRPC in Python costs each side about half a millisecond of CPU per MiB it moves; a worker on
another host (no shared memory) spends most of its step there. The data channel moves a step's
tensors with `recv_into` straight into the buffers the step is summed from and `sendall` from
the store's arrays, and nothing else: gRPC stays the control plane (joins, tickets, heartbeats)
and the fallback. The framing is `paramstore.v1.DataStep` / `DataStatus` (see the .proto).

It is a second listener of the same process under the same controls: a connection is admitted
only with a ticket issued over gRPC (so tokens, read-only tokens and mutual TLS apply), single
use, expiring in seconds, compared in constant time and bound to one store's training and rank;
TLS with the gRPC port's certificate when that port has one; a bounded number of connections
(in total and per peer address), each with its own thread; a header of bounded size that must
arrive within `read_timeout`, a body at least `MIN_BYTES_PER_SECOND` once begun, and nothing
at all between steps for longer than the idle timeout. A step's buffers are taken from the
server's in-flight byte budget and its parameters checked as a gRPC push's are, before a byte
of the body is read; a step refused or cut short applies nothing, and an error ends the
connection after its status is sent.

A worker on the server's host sends no body: its header names the shared-memory segment that
holds its gradients, the step runs as a PushPull through that segment does (the same checks, the
new values written there), and the status alone answers. Its step then costs one round trip on
a socket, none of gRPC's thread hand-offs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
import numpy as np

from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server import data_answers as answers
from paramstore.server import data_transfers, failures
from paramstore.server.data_tickets import TICKET_SECONDS, Ticket, TicketKind, Tickets
from paramstore.server.errors import InvalidArgument, NotTraining, StoreError

if TYPE_CHECKING:
    from paramstore.server.servicer import ParamStoreServicer, StepParameters

_log = logging.getLogger("paramstore.server")

DEFAULT_MAX_CONNECTIONS = 64
# A host's workers each hold one connection; a peer cannot take every slot (as gRPC's calls
# per caller): a worker refused falls back to gRPC.
DEFAULT_MAX_CONNECTIONS_PER_PEER = 16
DEFAULT_READ_TIMEOUT = 10.0
_METHOD = "DataChannel"  # a step's name in logs and metrics
_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# A connection's last step, for a next one with `same_parameters`: the specs of a step whose
# data came on the connection, the parameters of one whose data is in shared memory.
_Previous: TypeAlias = "list[pb.ParameterSpec] | StepParameters | None"


@dataclass(frozen=True)
class DataLimits:
    """Bounds of the data channel. `idle_timeout`: seconds a connection may wait for its next
    step (the gRPC calls' idle timeout); `read_timeout`: seconds for the ticket once connected
    and for a header once its first byte came; `ticket_seconds`: how long a ticket is valid."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_peer: int = DEFAULT_MAX_CONNECTIONS_PER_PEER
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = 30.0
    ticket_seconds: float = TICKET_SECONDS

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_peer < 1:
            raise ValueError(f"max data connections, in total and per peer, must be positive; "
                             f"got {self.max_connections} and {self.max_connections_per_peer}")
        for name in ("read_timeout", "idle_timeout", "ticket_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")


def server_tls(cert_chain: bytes, key: bytes, client_ca: bytes | None) -> ssl.SSLContext:
    """The data channel's TLS: the gRPC port's certificate, and with `client_ca` a client
    certificate it signed required (as gRPC's mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # `ssl` loads a certificate and key from files only: a private folder, gone at once.
    with tempfile.TemporaryDirectory(prefix="paramstore-tls-") as folder:
        chain_path, key_path = Path(folder) / "chain.pem", Path(folder) / "key.pem"
        chain_path.write_bytes(cert_chain)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        context.load_cert_chain(chain_path, key_path)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Closed(Exception):
    """The connection is to end: its peer left, stalled or broke the framing (already
    answered when it could be)."""


class _Refused(Exception):
    """A step refused: its status is sent, then the connection ends."""

    def __init__(self, status: pb.DataStatus) -> None:
        super().__init__(status.message)
        self.status = status


class DataChannel:
    """The listener and its connections (one thread each). `servicer` runs the steps."""

    def __init__(self, servicer: ParamStoreServicer, host: str, port: int,
                 limits: DataLimits, tls: ssl.SSLContext | None = None) -> None:
        self._servicer = servicer
        self.limits = limits
        self.tickets = Tickets(limits.ticket_seconds)
        self.advertised_host = ""  # a replica's advertised host, when clients reach it there
        self._tls = tls
        self._listener = socket.create_server(
            (host.strip("[]"), port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            backlog=limits.max_connections)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, bool] = {}  # -> busy with a step
        self._per_peer: Counter[str] = Counter()  # open connections by peer address
        self._of_rank: dict[tuple[str, int], socket.socket] = {}  # a rank's one connection
        self._closing = threading.Event()
        # Told each step's status and start, as a gRPC call's (`ServerMetrics.record`).
        self.record_step: Callable[[str, str, float], None] = lambda method, status, started: None
        # Told the bytes steps receive and send, as a gRPC call's (`ServerMetrics.count_bytes`).
        self.count_bytes: Callable[[str, int, int], None] = lambda method, received, sent: None
        self._accepting = threading.Thread(target=self._accept, name="paramstore-data-accept",
                                           daemon=True)

    def start(self) -> None:
        self._accepting.start()

    def close(self) -> None:
        """Accept no more; end idle connections now and busy ones after their step."""
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            idle = [connection for connection, busy in self._connections.items() if not busy]
        for connection in idle:
            _shut(connection)

    def abort(self) -> None:
        """End every connection now (a shutdown's grace is over)."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)

    # ---- connections -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, peer = self._listener.accept()
            except OSError:
                return  # closed
            refusal = self._enter(connection, peer[0])
            if refusal:
                _log.warning("data channel: refused a connection from %s: %s", peer[0], refusal)
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection, peer[0]),
                             name="paramstore-data", daemon=True).start()

    def _enter(self, connection: socket.socket, peer: str) -> str | None:
        """Count a new connection from `peer`; why it is refused, when it is over a bound."""
        limits = self.limits
        with self._lock:
            if len(self._connections) >= limits.max_connections:
                return f"{limits.max_connections} connections are open, the server's limit"
            if self._per_peer[peer] >= limits.max_connections_per_peer:
                return (f"it has {limits.max_connections_per_peer} connections open, the "
                        "server's limit per peer")
            self._connections[connection] = False
            self._per_peer[peer] += 1
        return None

    def _serve(self, connection: socket.socket, peer: str) -> None:
        stream = connection
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(self.limits.read_timeout)
            stream = self._secured(connection)
            if isinstance(stream, ssl.SSLSocket):
                stream.do_handshake()
            ticket = self._admit(stream, peer)
            if ticket is not None and ticket.kind is not TicketKind.STEPS:
                self._set_busy(stream, True)  # a stopping server lets the transfer finish
                data_transfers.serve(stream, ticket, self._servicer, self.limits,
                                     self.record_step)
            elif ticket is not None:
                self._steps(stream, ticket)
        except _Closed:
            pass
        except TimeoutError:  # a ticket, header or body that did not come in time
            _log.warning("data channel: closed a connection from %s that stopped sending or "
                         "sent too slowly", peer)
        except OSError as error:  # ssl.SSLError too: a plaintext client, a bad certificate
            _log.debug("data channel: connection from %s ended: %s", peer, error)
        finally:
            with self._lock:
                self._connections.pop(stream, None)
                self._connections.pop(connection, None)
                self._per_peer[peer] -= 1
                if not self._per_peer[peer]:
                    del self._per_peer[peer]
                for rank, held in list(self._of_rank.items()):
                    if held is stream:
                        del self._of_rank[rank]
            _shut(stream)
            stream.close()

    def _secured(self, connection: socket.socket) -> socket.socket:
        """`connection` with TLS when the server has it (the handshake still to do)."""
        if self._tls is None:
            return connection
        # From here on the TLS socket owns the connection: shutdown and close go through it.
        secured = self._tls.wrap_socket(connection, server_side=True,
                                        do_handshake_on_connect=False)
        with self._lock:
            self._connections.pop(connection, None)
            self._connections[secured] = False
        secured.settimeout(self.limits.read_timeout)
        return secured

    def _admit(self, stream: socket.socket, peer: str) -> Ticket | None:
        presented = bytearray(frames.TICKET_BYTES)
        frames.read_into(stream, memoryview(presented),
                         time.monotonic() + self.limits.read_timeout)
        ticket = self.tickets.redeem(bytes(presented))
        if ticket is None:
            _log.warning("data channel: refused a connection from %s: unknown, used or expired "
                         "ticket", peer)
            frames.send_message(stream, pb.DataStatus(
                code=grpc.StatusCode.UNAUTHENTICATED.value[0], error_kind="Unauthenticated",
                message="the data channel ticket is unknown, used or expired: get a new one "
                        "with OpenDataChannel"))
            return None
        frames.send_message(stream, pb.DataStatus())
        if ticket.kind is not TicketKind.STEPS:
            return ticket
        with self._lock:  # a rank's new connection replaces its last (a worker retrying)
            replaced = self._of_rank.get((ticket.store, ticket.rank))
            self._of_rank[ticket.store, ticket.rank] = stream
        if replaced is not None:
            _shut(replaced)
        return ticket

    def _steps(self, stream: socket.socket, ticket: Ticket) -> None:
        previous: _Previous = None
        counted = cast(socket.socket, _Counted(stream, self.count_bytes))
        while not self._closing.is_set():
            header = self._next_header(counted)
            self._set_busy(stream, True)
            started, status = time.perf_counter(), "CANCELLED"  # unless it is answered
            refusal: pb.DataStatus | None = None
            try:
                previous = self._step(counted, ticket, header, previous)
                status = "OK"
            except _Refused as refused:
                refusal = refused.status
                status = _STATUS_NAMES.get(refusal.code, "UNKNOWN")
            finally:
                self._set_busy(stream, False)
                self.record_step(_METHOD, status, started)
            if refusal is not None:
                frames.send_message(counted, refusal)
                answers.drain(stream, self.limits.read_timeout)
                return

    def _set_busy(self, stream: socket.socket, busy: bool) -> None:
        with self._lock:
            if stream in self._connections:
                self._connections[stream] = busy

    def _next_header(self, stream: socket.socket) -> pb.DataStep:
        raw = bytearray(frames.LENGTH.size)
        stream.settimeout(self.limits.idle_timeout)  # the worker computes between steps
        try:
            first = stream.recv_into(raw)
        except TimeoutError:
            _log.warning("data channel: closed a connection idle for %g s",
                         self.limits.idle_timeout)
            raise _Closed from None
        if first == 0:
            raise _Closed
        stream.settimeout(self.limits.read_timeout)
        deadline = time.monotonic() + self.limits.read_timeout
        frames.read_into(stream, memoryview(raw)[first:], deadline)
        try:
            body = bytearray(frames.message_length(raw))
            frames.read_into(stream, memoryview(body), deadline)
            return frames.parse(pb.DataStep, body)
        except frames.Malformed as error:
            frames.send_message(stream, answers.status(InvalidArgument(str(error))))
            raise _Closed from None

    def _step(self, stream: socket.socket, ticket: Ticket, header: pb.DataStep,
              previous: _Previous) -> _Previous:
        """Receive, run and answer one step; its parameters, for a next step with the same."""
        begin = header.begin
        try:
            if begin.store != ticket.store or begin.rank != ticket.rank:
                raise InvalidArgument(
                    f"this data connection carries rank {ticket.rank} of store "
                    f"{ticket.store!r}'s training, not rank {begin.rank} of {begin.store!r}")
            session = self._servicer.training.session(ticket.store)
            if session is not ticket.session:
                raise NotTraining(f"the training of store {ticket.store!r} this data "
                                  "connection was opened for ended: join again")
            if begin.shared_memory:  # the data is in the segment: a status is the answer
                parameters = self._servicer.shared_memory_step(
                    session, begin, list(header.parameters),
                    None if isinstance(previous, list) else previous)
                frames.send_message(stream, pb.DataStatus())
                return parameters
            specs = list(header.parameters) if not begin.same_parameters else \
                previous if isinstance(previous, list) else None
            if specs is None:
                raise InvalidArgument("same_parameters needs a previous step on the connection "
                                      "with its data on the connection")
            with self._servicer.inflight.account() as take:
                items, buffers = self._servicer.data_step_items(begin, specs, take)
                deadline = answers.body_deadline(self.limits.read_timeout,
                                                 sum(buffer.nbytes for buffer in buffers))
                for buffer in buffers:
                    frames.read_into(stream, buffer.data, deadline)
                values = session.push_pull(ticket.rank, items(), begin.step, begin.worker_id)
        except StoreError as error:
            raise _Refused(answers.status(error)) from None
        except (_Closed, OSError):
            raise
        except Exception as error:
            answer = failures.unexpected(_METHOD, error)
            raise _Refused(pb.DataStatus(code=answer.code.value[0], error_kind=answer.kind,
                                         message=answer.message)) from None
        frames.send_message(stream, pb.DataStatus())
        for _, value in values:
            stream.sendall(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data)
        return specs


class _Counted:
    """A connection's steps' reads and writes, each told to `count` as it is done; every other
    use of the connection is the socket's own."""

    def __init__(self, stream: socket.socket, count: Callable[[str, int, int], None]) -> None:
        self._stream, self._count = stream, count

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        received = self._stream.recv_into(buffer, nbytes)
        self._count(_METHOD, received, 0)
        return received

    def sendall(self, data: Any) -> None:
        self._stream.sendall(data)
        self._count(_METHOD, 0, memoryview(data).nbytes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)

