"""Big pulls over the server's data channel: tensor bytes received straight into the local
parameters.

gRPC in Python hands each message over as a new `bytes` that the SDK copies into the
destination, and the server pays one copy per message too: a Pull runs at about 0.8 of bare
gRPC. The data channel (`paramstore.server.data_transfers`) sends the bytes of the listed store
version from the store's own arrays, and they are received with `recv_into` into the arrays
they fill. gRPC stays the control plane (the listing, the ticket from `OpenDataRead`) and the
fallback: a pull under `MIN_BYTES`, a server without a data channel, or one that cannot be
reached goes through Pull (why is logged, and the channel tried again `RETRY_SECONDS` later).

`pulling.pull_into` lists and checks every destination first, so a read refused (the store
written since its listing: `Aborted`, and the pull lists it again) writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import grpc
import numpy as np

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

# Below this a pull's fixed costs (a ticket call, a connection) outweigh the copies it saves:
# measured on loopback, 1-2 MiB pull as fast either way, 4 MiB 1.4x, 32 MiB 1.9x faster.
MIN_BYTES = 4 << 20
READ_TIMEOUT = 30.0  # seconds for each read from the server when the client has no timeout
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_log = logging.getLogger("paramstore.client")


class _ReadConnection(DataConnection):
    def read(self, request: pb.DataRead, tensors: list[np.ndarray],
             progress: Progress) -> None:
        """Send `request`; receive each tensor's bytes into `tensors`, in order. Raises the
        server's refusal before any is written, `Unavailable` when the connection broke after.
        Closes the connection."""
        try:
            try:
                frames.send_message(self._stream, request)
                status = frames.read_message(self._stream, pb.DataStatus)
            except (OSError, frames.Malformed) as error:
                raise Refused(f"the data channel broke before the read began: {error}") \
                    from None
            if status.code:
                raise from_status(_CODES.get(status.code), status.message, status.error_kind,
                                  status.owner)
            with progress(sum(tensor.nbytes for tensor in tensors)) as bar:
                for tensor in tensors:
                    frames.read_into(self._stream, tensor.reshape(-1).view(np.uint8).data)
                    bar.update(tensor.nbytes)
        except (OSError, frames.Malformed) as error:  # ssl.SSLError is an OSError
            raise Unavailable(f"the data channel connection broke during a pull: {error}; "
                              "pull again") from None
        finally:
            self.close()


class DataPulls:
    """A client's pulls over the data channel of the stores' servers."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._retry_at = 0.0  # after a failure to use the channel, pulls go through gRPC until

    def read_listed(self, store: str) -> Any:
        """The `pulling.ReadListed` of a pull of `store`."""
        return lambda params, listing, progress: self.read(store, params, listing, progress)

    def read(self, store: str, params: Any, listing: Listing, progress: Progress) -> bool:
        """Fill `params` with the store's tensors at the listed version, each received into
        its first destination's array and copied to any other (`pulling.ReadListed`)."""
        names, tensors, copies = _plan(params, listing)
        if sum(tensor.nbytes for tensor in tensors) < MIN_BYTES or \
                time.monotonic() < self._retry_at:
            return False
        connection = self._open(store)
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

    def _open(self, store: str) -> _ReadConnection | None:
        """A connection admitted for one read of `store`, or None (why is logged). Raises the
        ticket call's errors but those saying the channel cannot be used."""
        try:
            reply = self._client.call("OpenDataRead", pb.OpenDataReadRequest(store=store))
            host = reply.host or self._client.address.split(",")[0].rsplit(":", 1)[0]
            return cast(_ReadConnection, _ReadConnection.open(
                host, reply.port, reply.ticket, self._client.data_channel_tls(),
                self._client.timeout or READ_TIMEOUT))
        except NotOwner:
            raise
        except ParamstoreError as error:
            # No channel, too many tickets, a server before OpenDataRead: Pull does it. Other
            # errors (the store is gone, the server is) would be Pull's too.
            if not isinstance(error, (FailedPrecondition, ResourceExhausted, Refused)) and \
                    error.code != "UNIMPLEMENTED":
                raise
            self._fall_back(store, error)
        except OSError as error:  # the client's TLS files
            self._fall_back(store, error)
        return None

    def _fall_back(self, store: str, error: Exception) -> None:
        _log.warning("store %s: pulls go through gRPC, not the server's data channel, for %g "
                     "s: %s", store, RETRY_SECONDS, error)
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
