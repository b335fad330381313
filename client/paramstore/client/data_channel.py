"""`DataChannel`: a worker's training steps over the server's data channel.

The server's data channel (`paramstore.server.data_channel`; the framing is `DataStep` and
`DataStatus` in the .proto) moves a step's tensors over a plain TCP or TLS connection, sent from
the gradients' own memory and received straight into the arrays that take the new values:
none of gRPC's per-MiB costs on either side. A connection is admitted with a single-use ticket
from `OpenDataChannel`; an error status ends it, and the next step opens a new one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from paramstore.client import transfer
from paramstore.client.errors import (
    NotOwner,
    NotTraining,
    ParamstoreError,
    Unavailable,
    from_status,
)
from paramstore.dtypes import numpy_dtype
from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb

CONNECT_TIMEOUT = 10.0
_CODES = {code.value[0]: code for code in grpc.StatusCode}
RETRY_SECONDS = 60.0  # a channel that could not be used is tried again then
_log = logging.getLogger("paramstore.client")
Answer = TypeVar("Answer")


class Refused(ParamstoreError):
    """The data channel could not be reached or did not admit the worker: its steps go
    through gRPC instead."""


def client_tls(tls: bool | str | os.PathLike[str] | bytes,
               client_cert: tuple[bytes, bytes] | None) -> ssl.SSLContext | None:
    """The TLS the gRPC channel uses (`connect`'s `tls` and `client_cert`), for the data
    channel; None for plain text."""
    if tls is False:
        return None
    if tls is True:
        context = ssl.create_default_context()
    else:
        roots = tls if isinstance(tls, bytes) else Path(tls).read_bytes()
        context = ssl.create_default_context(cadata=roots.decode())
    if client_cert is not None:
        # `ssl` loads a certificate and key from files only: a private folder, gone at once.
        with tempfile.TemporaryDirectory(prefix="paramstore-tls-") as folder:
            chain, key = Path(folder) / "chain.pem", Path(folder) / "key.pem"
            chain.write_bytes(client_cert[0])
            key.touch(mode=0o600)
            key.write_bytes(client_cert[1])
            context.load_cert_chain(chain, key)
    return context


class DataConnection:
    """One admitted connection to the data channel."""

    def __init__(self, stream: socket.socket, timeout: float | None) -> None:
        self._stream = stream
        self._stream.settimeout(timeout)  # a sync step waits for the other workers
        self._specs: list[pb.ParameterSpec] | None = None  # the last step's on this connection
        self.used = time.monotonic()

    @classmethod
    def open(cls, host: str, port: int, ticket: bytes, tls: ssl.SSLContext | None,
             timeout: float | None) -> DataConnection:
        """Connect to `host:port` and present `ticket`. Raises `Refused` when the channel
        cannot be reached or refuses the ticket."""
        try:
            stream = socket.create_connection((host.strip("[]"), port), timeout=CONNECT_TIMEOUT)
        except OSError as error:
            raise Refused(f"cannot connect to the data channel at {host}:{port}: {error}") \
                from None
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                stream = tls.wrap_socket(stream, server_hostname=host.strip("[]"))
            stream.sendall(ticket)
            status = frames.read_message(stream, pb.DataStatus)
        except (OSError, frames.Malformed) as error:
            stream.close()
            raise Refused(f"the data channel at {host}:{port} did not admit this worker: "
                          f"{error}") from None
        if status.code:
            stream.close()
            raise Refused(f"the data channel at {host}:{port} refused its ticket: "
                          f"{status.message}")
        return cls(stream, timeout)

    def exchange(self, begin: pb.PushBegin, outgoing: list[transfer.Outgoing],
                 destination: Callable[[pb.ParameterSpec], np.ndarray | None]
                 ) -> list[transfer.Received]:
        """One step: `begin` (store, rank, step, compression), each gradient's bytes; the new
        values, each received into `destination(spec)` or, where that is None, a new array.
        Raises the server's error for a refused step and `Unavailable` when the connection
        broke; either way the connection is closed."""
        specs = [item.spec for item in outgoing]

        def send_body() -> None:
            for item in outgoing:
                if item.data is not None:
                    self._stream.sendall(_bytes_of(item.data))

        def receive() -> list[transfer.Received]:
            received = []
            for spec in specs:
                value = destination(spec)
                if value is None:
                    value = np.empty(tuple(spec.shape),
                                     dtype=numpy_dtype(spec.dtype).newbyteorder("<"))
                frames.read_into(self._stream, _bytes_of(value))
                received.append(transfer.Received(spec, value))
            return received

        return self._step(begin, specs, send_body, receive)

    def signal(self, begin: pb.PushBegin, specs: list[pb.ParameterSpec]) -> bool:
        """One step whose data is in the shared-memory segment `begin` names: the header, then
        the status (the new values are in the segment). Returns whether the step went with
        `same_parameters`. Raises as `exchange`."""
        self._step(begin, specs, lambda: None, lambda: None)
        return begin.same_parameters

    def _step(self, begin: pb.PushBegin, specs: list[pb.ParameterSpec],
              send_body: Callable[[], None], receive: Callable[[], Answer]) -> Answer:
        """Send the header of a step of `specs` (without them when they are the last step's)
        and `send_body()`; after an OK status, `receive()`."""
        begin.parameter_count = len(specs)
        begin.same_parameters = specs == self._specs
        header = pb.DataStep(begin=begin, parameters=[] if begin.same_parameters else specs)
        self._specs = specs
        try:
            frames.send_message(self._stream, header)
            send_body()
            status = frames.read_message(self._stream, pb.DataStatus)
            if status.code:
                raise from_status(_CODES.get(status.code), status.message, status.error_kind,
                                  status.owner)
            answer = receive()
        except (OSError, frames.Malformed) as error:  # ssl.SSLError is an OSError
            self.close()
            raise Unavailable(f"the data channel connection broke: {error}") from None
        except BaseException:
            self.close()
            raise
        self.used = time.monotonic()
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.shutdown(socket.SHUT_RDWR)
        self._stream.close()

    @property
    def closed(self) -> bool:
        return self._stream.fileno() < 0


def _bytes_of(array: np.ndarray) -> memoryview:
    """The bytes of `array` (C-contiguous), without a copy."""
    return array.reshape(-1).view(np.uint8).data


class DataChannel:
    """A worker's use of the server's data channel, from one join to the next: its connection,
    opened when a step needs it with a ticket from `OpenDataChannel` on `client` (routed to
    the store's owner), and replaced when it idled for half the server's idle timeout
    (`idle_timeout`), before the server would close it. `port` 0: the server has none."""

    def __init__(self, client: Any, store: str, port: int, idle_timeout: float) -> None:
        self._client = client
        self._store = store
        self._port = port
        self._idle_limit = (idle_timeout or 30.0) / 2
        self._connection: DataConnection | None = None
        self._retry_at = 0.0  # after a failure to use the channel, steps go through gRPC until

    def connection(self, rank: int, worker_id: int = 0) -> DataConnection | None:
        """The open connection, or a new one, or None when there is no channel to use now
        (the step then goes through gRPC; why is logged, and the channel tried again
        `RETRY_SECONDS` later). Raises `NotTraining`, `NotOwner`, `Unavailable` from the
        ticket's call: the step is tried again, as any."""
        connection = self._connection
        if connection is not None and not connection.closed and \
                time.monotonic() - connection.used < self._idle_limit:
            return connection
        self.close()
        if not self._port or time.monotonic() < self._retry_at:
            return None
        try:
            reply = self._client.call("OpenDataChannel", pb.OpenDataChannelRequest(
                store=self._store, rank=rank, worker_id=worker_id))
            host = reply.host or self._client.address.split(",")[0].rsplit(":", 1)[0]
            self._connection = DataConnection.open(
                host, reply.port, reply.ticket, self._client.data_channel_tls(),
                self._client.timeout)
        except (NotTraining, NotOwner, Unavailable):
            raise
        except (ParamstoreError, OSError) as error:  # ssl.SSLError is an OSError
            _log.warning("store %s: training steps go through gRPC, not the server's data "
                         "channel, for %g s: %s", self._store, RETRY_SECONDS, error)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return None
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
