"""Big pulls and pushes over the server's data channel: tensor bytes sent from the local
parameters and received straight into them.

gRPC in Python hands each message over as a new `bytes`, which costs a copy on each side: a
Pull runs at about 0.8 of bare gRPC. The data channel (`paramstore.server.data_transfers`)
moves raw bytes with `sendall` from the arrays that hold them and `recv_into` the arrays they
fill. gRPC stays the control plane (the listing, the tickets from `OpenDataRead` and
`OpenDataWrite`) and the fallback: a transfer under `MIN_BYTES`, a server without a data
channel, or one that cannot be reached goes through Pull or Push (why is logged, and the
channel tried again `RETRY_SECONDS` later).

`pulling.pull_into` lists and checks every destination first, so a read refused (the store
written since its listing: `Aborted`, and the pull lists it again) writes nothing. A push is
one commit on the server, as Push's: refused or cut short, it writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import grpc
import numpy as np

from paramstore.client import transfer
from paramstore.client.data_channel import RETRY_SECONDS, DataConnection, Refused
from paramstore.client.errors import (
    FailedPrecondition,
    NotOwner,
    ParamstoreError,
    ResourceExhausted,
    Unavailable,
    from_status,
)
from paramstore.client.pulling import Listing, Progress, _arrays_of, _dtype, _shape
from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb

# Below this a transfer's fixed costs (a ticket call, a connection) outweigh the copies it
# saves: measured on loopback, 1-2 MiB pull as fast either way, 4 MiB 1.4x, 32 MiB 1.9x faster.
MIN_BYTES = 4 << 20
READ_TIMEOUT = 30.0  # seconds for each read from the server when the client has no timeout
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_log = logging.getLogger("paramstore.client")


class _TransferConnection(DataConnection):
    """A connection admitted for one read or one push."""

    def read(self, request: pb.DataRead, tensors: list[np.ndarray],
             progress: Progress) -> None:
        """Send `request`; receive each tensor's bytes into `tensors`, in order. Raises
        `Refused` when the connection broke before the read began, the server's refusal
        before any tensor is written, `Unavailable` when the connection broke after. Closes
        the connection."""
        try:
            self._begin(request, [])
            with progress(sum(tensor.nbytes for tensor in tensors)) as bar:
                for tensor in tensors:
                    frames.read_into(self._stream, _bytes_of(tensor))
                    bar.update(tensor.nbytes)
        except (OSError, frames.Malformed) as error:  # ssl.SSLError is an OSError
            raise Unavailable(f"the data channel connection broke during a pull: {error}; "
                              "pull again") from None
        finally:
            self.close()

    def write(self, request: pb.DataWrite, tensors: list[np.ndarray]) -> int:
        """Send `request` and the bytes of `tensors`; the store's version after the push.
        Raises `Refused` when the connection broke before the push began, the server's
        refusal, `Unavailable` when the connection broke after. Closes the connection."""
        try:
            self._begin(request, tensors)
            return frames.read_message(self._stream, pb.PushResponse).version
        except (OSError, frames.Malformed) as error:  # ssl.SSLError is an OSError
            raise Unavailable(f"the data channel connection broke during a push, which may "
                              f"or may not have been written: {error}") from None
        finally:
            self.close()

    def _begin(self, request: pb.DataRead | pb.DataWrite, tensors: list[np.ndarray]) -> None:
        """Send `request` and `tensors`' bytes, then read the server's status: raise its
        refusal."""
        try:
            frames.send_message(self._stream, request)
        except OSError as error:
            raise Refused(f"the data channel broke before the transfer began: {error}") \
                from None
        for tensor in tensors:
            self._stream.sendall(_bytes_of(tensor))
        status = frames.read_message(self._stream, pb.DataStatus)
        if status.code:
            raise from_status(_CODES.get(status.code), status.message, status.error_kind,
                              status.owner)


def _bytes_of(array: np.ndarray) -> memoryview:
    return array.reshape(-1).view(np.uint8).data


class DataTransfers:
    """A client's pulls and pushes over the data channel of the stores' servers."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._retry_at = 0.0  # after a failure to use the channel, transfers take gRPC until

    def read_listed(self, store: str) -> Any:
        """The `pulling.ReadListed` of a pull of `store`."""
        return lambda params, listing, progress: self.read(store, params, listing, progress)

    def read(self, store: str, params: Any, listing: Listing, progress: Progress) -> bool:
        """Fill `params` with the store's tensors at the listed version, each received into
        its first destination's array and copied to any other (`pulling.ReadListed`)."""
        names, tensors, copies = _plan(params, listing)
        if not self._worth_it(sum(tensor.nbytes for tensor in tensors)):
            return False
        connection = self._open("OpenDataRead", pb.OpenDataReadRequest(store=store))
        if connection is None:
            return False
        try:
            connection.read(pb.DataRead(store=store, version=listing.version, names=names),
                            tensors, progress)
        except Refused as error:
            self._fall_back(store, error)
            return False
        for copy in copies:
            copy()
        return True

    def push(self, begin: pb.PushBegin, outgoing: list[transfer.Outgoing],
             progress: Progress, request_id: str) -> int | None:
        """Push `outgoing` as a Push with `begin` under `request_id` would; the store's version
        after it, or None when the data channel cannot take it or broke during it (a Push under
        the same id does it then: the server applies the two once). Raises Push's errors."""
        tensors = [item.data for item in outgoing if item.data is not None]
        total = sum(tensor.nbytes for tensor in tensors)
        begin.parameter_count = len(outgoing)
        request = pb.DataWrite(begin=begin, parameters=[item.spec for item in outgoing])
        if not self._worth_it(total) or request.ByteSize() > frames.MAX_MESSAGE_BYTES:
            return None  # small, or specs that only Push's stream of messages can carry
        connection = self._open("OpenDataWrite", pb.OpenDataWriteRequest(store=begin.store),
                                request_id)
        if connection is None:
            return None
        try:
            with progress(total) as bar:
                version = connection.write(request, tensors)
                bar.update(total)
        except Refused as error:
            self._fall_back(begin.store, error)
            return None
        except Unavailable as error:
            _log.warning("store %s: a push over the data channel broke (%s); sending it again "
                         "as a Push under its request id", begin.store, error)
            return None
        return version

    def _worth_it(self, total: int) -> bool:
        return total >= MIN_BYTES and time.monotonic() >= self._retry_at

    def _open(self, method: str, request: Any, request_id: str = ""
              ) -> _TransferConnection | None:
        """A connection admitted with a ticket from `method`, or None (why is logged). Raises
        the ticket call's errors but those saying the channel cannot be used."""
        try:
            reply = self._client.call(method, request, request_id)
            host = reply.host or self._client.address.split(",")[0].rsplit(":", 1)[0]
            return cast(_TransferConnection, _TransferConnection.open(
                host, reply.port, reply.ticket, self._client.data_channel_tls(),
                self._client.timeout or READ_TIMEOUT))
        except NotOwner:
            raise
        except ParamstoreError as error:
            # No channel, too many tickets, a server without these calls: gRPC does it. Other
            # errors (the store is gone, the server is, a read-only token) would be gRPC's too.
            if not isinstance(error, (FailedPrecondition, ResourceExhausted, Refused)) and \
                    error.code != "UNIMPLEMENTED":
                raise
            self._fall_back(request.store, error)
        except OSError as error:  # the client's TLS files
            self._fall_back(request.store, error)
        return None

    def _fall_back(self, store: str, error: Exception) -> None:
        _log.warning("store %s: pulls and pushes go through gRPC, not the server's data "
                     "channel, for %g s: %s", store, RETRY_SECONDS, error)
        self._retry_at = time.monotonic() + RETRY_SECONDS


def _plan(params: Any, listing: Listing
          ) -> tuple[list[str], list[np.ndarray], list[Callable[[], None]]]:
    """The store names to read, the array each tensor is received into, and the copies that
    then fill the other destinations. A tensor is read once whatever the local names and store
    aliases it has; a name without data in the store is left alone."""
    names: list[str] = []
    tensors: list[np.ndarray] = []
    copies: list[Callable[[], None]] = []
    received: dict[str, np.ndarray] = {}  # a store tensor's name -> where it is received
    done: set[int] = set()  # destinations already filled
    for name, destination in params.items():
        spec = listing.specs[name]
        if id(destination) in done or spec.shape_unknown or not spec.has_data:
            continue
        done.add(id(destination))
        source = spec.alias_of or name
        arrays = _arrays_of(destination)
        into = received.get(source)
        if into is None:
            if arrays is not None and arrays[0].flags.c_contiguous:
                into, arrays = arrays[0], arrays[1:]
            else:
                into = np.empty(_shape(spec), _dtype(spec))
            received[source] = into
            names.append(source)
            tensors.append(into)
        copies.append(_copy(into, destination, arrays))
    return names, tensors, copies


def _copy(value: np.ndarray, destination: Any, arrays: tuple[np.ndarray, ...] | None
          ) -> Callable[[], None]:
    def copy() -> None:
        if arrays is None:  # a deferred parameter takes the data for its initialization
            destination.set_data(np.array(value))
            return
        for array in arrays:
            np.copyto(array, value)

    return copy
