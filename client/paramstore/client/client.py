"""`connect()` and the `Client`: one channel to a paramstore server, configured once."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc.experimental import ChannelOptions

from paramstore import checkpoint
from paramstore._memory import keep_freed_memory
from paramstore.client import transfer
from paramstore.client.data_channel import client_tls
from paramstore.client.data_transfers import DataTransfers
from paramstore.client.errors import (
    AlreadyExists,
    InvalidArgument,
    ParamstoreError,
    from_rpc_error,
)
from paramstore.client.kvstore import RemoteKVStore
from paramstore.client.models import SnapshotInfo, snapshot_info
from paramstore.client.routing import (
    DEFAULT_FAILOVER_TIMEOUT,
    Replayable,
    Routes,
    request_id_metadata,
    store_of,
)
from paramstore.client.store import RemoteStore
from paramstore.proto import chunks, wire
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc

_log = logging.getLogger("paramstore.client")

# Reads change nothing: gRPC retries them on UNAVAILABLE with exponential backoff (a server
# restarting, a connection not yet up). Writes are never retried behind the caller's back.
_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": wire.SERVICE, "method": method}
                 for method in sorted(wire.READ_METHODS)],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})


def connect(
    address: str,
    token: str | None = None,
    tls: bool | str | os.PathLike[str] | bytes = False,
    *,
    timeout: float | None = None,
    progress: bool | None = None,
    client_cert: tuple[bytes, bytes] | None = None,
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
) -> Client:
    """A `Client` for the server at `address` ("host:port"), or for the replicas of a cluster
    ("host1:port1,host2:port2,..."): each store's calls then go to the replica that owns it,
    and a call that meets a replica down or a store between owners is tried again, on another
    replica, for up to `failover_timeout` seconds.

    `token`: sent as `authorization: Bearer <token>`. `tls`: False (plain text), True (TLS with
    the system's roots), or a CA certificate (PEM bytes or a file path) to trust. `timeout`:
    seconds per call (None: no limit). `progress`: a progress bar for long transfers; None
    shows one only on a terminal. `client_cert`: (certificate chain PEM, private key PEM)
    presented to a server that asks for mutual TLS (needs `tls`). Connecting is lazy: an
    unreachable server shows up as `Unavailable` on the first call.
    """
    return Client(address, token=token, tls=tls, timeout=timeout, progress=progress,
                  client_cert=client_cert, failover_timeout=failover_timeout)


class Client:
    """A connection to one server; use it as a context manager or call `close()`."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: bool | str | os.PathLike[str] | bytes = False,
        timeout: float | None = None,
        progress: bool | None = None,
        client_cert: tuple[bytes, bytes] | None = None,
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
    ) -> None:
        addresses = [part.strip() for part in address.split(",") if part.strip()]
        if not addresses:
            raise InvalidArgument(f"no server address in {address!r}")
        for each in addresses:
            _check_address(each)
        # gRPC hands each received chunk over in a new buffer and the chunk is freed once
        # copied: reusing the freed blocks spares page-faulting every pulled byte's memory.
        keep_freed_memory()
        self._tls, self._client_cert = tls, client_cert
        self._data_channel_tls: ssl.SSLContext | None = None
        self.data_transfers = DataTransfers(self)  # big pulls and pushes over data channels
        self._connections: dict[str, _Connection] = {}
        self._connections_lock = threading.Lock()
        # UNAVAILABLE is retried on another replica only when there are several to try.
        self._routes = Routes(addresses, failover_timeout if len(addresses) > 1 else 0.0)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.address = address
        self.timeout = timeout
        self.progress = progress

    # ---- stores ------------------------------------------------------------------------------

    def create_store(self, name: str) -> RemoteStore:
        """Create an empty store. Raises `AlreadyExists`, `InvalidArgument` (name)."""
        self.call("CreateStore", pb.CreateStoreRequest(name=name))
        return RemoteStore(self, name)

    def store(self, name: str) -> RemoteStore:
        """Open an existing store. Raises `StoreNotFound`."""
        self.call("GetStore", pb.GetStoreRequest(name=name))
        return RemoteStore(self, name)

    def list_stores(self) -> list[str]:
        """The names of every store, sorted (of a cluster: every replica's, and those moving
        between replicas, whichever replica was asked)."""
        reply = self.call("ListReplicas", pb.ListReplicasRequest())
        if any(replica.address for replica in reply.replicas):  # the replicas of a cluster
            # A store being handed over has no owner for a moment, and still exists.
            return sorted({*reply.unowned_stores,
                           *(store for replica in reply.replicas for store in replica.stores)})
        return [store.name for reply in self.pages("ListStores", pb.ListStoresRequest())
                for store in reply.stores]

    def cluster(self) -> dict[str, list[str]]:
        """Each replica's address and the stores it owns, sorted; a server that is no replica
        appears as one, under the address it was reached at."""
        reply = self.call("ListReplicas", pb.ListReplicasRequest())
        return {replica.address or self.address: list(replica.stores)
                for replica in reply.replicas}

    def delete_store(self, name: str) -> None:
        """Delete a store and its snapshots. Raises `StoreNotFound`."""
        self.call("DeleteStore", pb.DeleteStoreRequest(name=name))

    def import_snapshot(
        self, path: str | os.PathLike[str], store: str, select: str | None = None
    ) -> SnapshotInfo:
        """Create `store` from a safetensors file, which becomes its first snapshot.

        `select`: a regex matched at the start of names; only the parameters it selects (and
        the targets of the aliases it selects) are imported, and only their bytes are read
        from `path`. The server validates the file before anything changes. Raises
        `AlreadyExists`, `InvalidArgument` (a malformed file, a bad name or regex, a selection
        of nothing), `ResourceExhausted` (too big).
        """
        if select:
            with tempfile.TemporaryDirectory() as folder:
                selected = os.path.join(folder, "selected.safetensors")
                _write_selected(path, selected, select, store)
                return self.import_snapshot(selected, store)
        size = os.path.getsize(path)

        def requests() -> Iterator[pb.ImportSnapshotRequest]:
            yield pb.ImportSnapshotRequest(begin=pb.ImportBegin(store=store, size_bytes=size))
            with open(path, "rb") as file, self.progress_bar(size, f"import {store}") as bar:
                while chunk := file.read(transfer.CHUNK_BYTES):
                    bar.update(len(chunk))
                    yield pb.ImportSnapshotRequest(chunk=chunk)

        return snapshot_info(self.call("ImportSnapshot", requests()))

    def kvstore(
        self, store: str, mode: str = "sync", num_workers: int = 1, timeout: float = 0.0,
        shared_memory: bool = True, data_channel: bool = True,
    ) -> RemoteKVStore:
        """Join `store`'s distributed training as one worker: a KVStore for `gluon.Trainer`.

        The store is created when it does not exist. `mode` "sync" (gradients of all
        `num_workers` summed, one update per step) or "async" (each push applied on arrival);
        `timeout`: seconds a sync step waits for missing workers (0: the server's default).
        A worker on the server's host moves its gradients and weights through shared memory
        instead of the socket, unless `shared_memory` is False; over the socket, steps take the
        server's data channel (a TCP connection outside gRPC, admitted by a ticket) when it has
        one, unless `data_channel` is False, and gRPC otherwise.
        Raises `InvalidArgument`, `FailedPrecondition` (the store trains in another mode or
        with another worker count, or every rank is taken).
        """
        try:
            self.create_store(store)
        except AlreadyExists:
            pass
        return RemoteKVStore(self, store, mode, num_workers, timeout, shared_memory,
                             data_channel)

    # ---- plumbing ----------------------------------------------------------------------------

    def call(self, method: str, request: Any, request_id: str = "") -> Any:
        """Run a unary-response RPC (a request message or an iterator of them) on the replica
        that owns its store, following redirects and failovers (`routing`). A mutating call
        goes under `request_id`, else a fresh one (`routing.request_id_metadata`)."""
        store, sent_again, retries = self._routed(method, request)
        metadata = self._metadata + request_id_metadata(method, request_id)
        with _logged(method):
            for attempt in self._routes.attempts(store, retries=retries):
                sent = sent_again()
                try:
                    reply = self._connection(attempt.address).method(method)(
                        sent, metadata=metadata, timeout=self.timeout)
                except grpc.RpcError as error:
                    if not attempt.retry(error):
                        raise from_rpc_error(error, attempt.address) from None
                else:
                    # The store's owner answered: its calls that cannot fail over (a
                    # training worker's steps) go there too.
                    self._routes.learn(store, attempt.address)
                    return reply
        raise AssertionError("unreachable: attempts never end")

    def pages(self, method: str, request: Any) -> Iterator[Any]:
        """Every reply of a paged listing: the request again with each `next_page_token`."""
        while True:
            reply = self.call(method, request)
            yield reply
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    def stream(self, method: str, request: Any) -> Iterator[Any]:
        """Run a server-streaming RPC, yielding its replies. It is tried again elsewhere (as
        `call` does) only until its first reply."""
        store, sent_again, retries = self._routed(method, request)
        metadata = self._metadata + request_id_metadata(method)
        with _logged(method):
            for attempt in self._routes.attempts(store, retries=retries):
                sent = sent_again()
                replied = False
                try:
                    for reply in self._connection(attempt.address).method(method)(
                            sent, metadata=metadata, timeout=self.timeout):
                        replied = True
                        yield reply
                    return
                except grpc.RpcError as error:
                    if replied or not attempt.retry(error):
                        raise from_rpc_error(error, attempt.address) from None

    def _method(self, name: str) -> Any:
        """The callable of method `name` on the first server named (for tests that send raw
        messages)."""
        return self._connection(self._routes.addresses[0]).method(name)

    def _routed(self, method: str, request: Any) -> tuple[str, Callable[[], Any], bool]:
        """The store a request (a message, or a stream of them) names, a function giving the
        request for each attempt, and whether a failed attempt may be tried again. A stream
        is kept for a retry only where a call can fail over, and never a session's: a single
        server's calls never hold a push in memory (its first message names the store, to
        route it to its owner)."""
        if hasattr(request, "DESCRIPTOR"):
            return store_of(request), lambda: request, True
        keep = len(self._routes.addresses) > 1 and method not in wire.SESSION_METHODS
        replayable = Replayable(iter(request), keep=keep)
        first = replayable.first
        return (store_of(first) if first is not None else ""), replayable.fresh, keep

    def _connection(self, address: str) -> _Connection:
        with self._connections_lock:
            connection = self._connections.get(address)
            if connection is None:
                connection = self._connections[address] = _Connection(
                    address, self._tls, self._client_cert,
                    retries=len(self._routes.addresses) == 1)
            return connection

    def data_channel_tls(self) -> ssl.SSLContext | None:
        """The TLS of the client's channels (None: plain text) for data channel connections,
        made once."""
        if self._data_channel_tls is None and self._tls is not False:
            self._data_channel_tls = client_tls(self._tls, self._client_cert)
        return self._data_channel_tls

    def progress_bar(self, total: int, description: str) -> Any:
        return transfer.progress_bar(total, description, self.progress)

    def close(self) -> None:
        """Close the channels; calls in flight are cancelled."""
        with self._connections_lock:
            for connection in self._connections.values():
                connection.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r})"


class _Connection:
    """One channel to one server, with its stubs."""

    def __init__(self, address: str, tls: bool | str | os.PathLike[str] | bytes,
                 client_cert: tuple[bytes, bytes] | None, retries: bool) -> None:
        # `retries`: gRPC retries reads on this channel; a cluster's client does not, as it
        # tries another replica instead of waiting on a dead one.
        options = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)] \
            if retries else [("grpc.enable_retries", 0)]
        # A reply stream (a pull) is read by the thread that iterates it, not handed over
        # from gRPC's channel thread: a thread switch less per message (bench/service.py).
        options.append((ChannelOptions.SingleThreadedUnaryStream, 1))
        # The names an initialize or a diff answers with grow with the store (a million
        # parameters' names pass gRPC's 4 MiB default); the server pages every listing.
        options.append(("grpc.max_receive_message_length", -1))
        if tls is False:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            self.channel = grpc.secure_channel(
                address, _credentials(tls, client_cert), options=options
            )
        self._stub = pb_grpc.ParamStoreStub(self.channel)
        # The tensor streams carry chunks serialized without protobuf's copies.
        self._tensor_methods = {method: self._tensor_method(method) for method in
                                {*wire.PUSH_METHODS, *wire.PULL_METHODS}}

    def method(self, name: str) -> Any:
        return self._tensor_methods.get(name) or getattr(self._stub, name)

    def _tensor_method(self, method: str) -> Any:
        pushes, pulls = method in wire.PUSH_METHODS, method in wire.PULL_METHODS
        make = {
            (True, False): self.channel.stream_unary,
            (True, True): self.channel.stream_stream,
            (False, True): self.channel.unary_stream,
        }[(pushes, pulls)]
        return make(
            wire.path(method),
            request_serializer=chunks.serialize if pushes else pb.PullRequest.SerializeToString,
            response_deserializer=chunks.deserializer(pb.PullResponse) if pulls
            else pb.PushResponse.FromString,
        )


def _check_address(address: str) -> None:
    """Raise `InvalidArgument` unless `address` is HOST:PORT with a port a server can listen
    on: gRPC would dial 443 for a bare host, and another port for one above 65535."""
    host, _, port = address.rpartition(":")
    if not host or "://" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"server address {address!r} must be HOST:PORT with a port from "
                              "1 to 65535 and no scheme, such as 127.0.0.1:50051")


def _credentials(
    tls: bool | str | os.PathLike[str] | bytes, client_cert: tuple[bytes, bytes] | None
) -> grpc.ChannelCredentials:
    chain, key = client_cert if client_cert is not None else (None, None)
    roots: bytes | None = None  # True: the system's roots
    if isinstance(tls, bytes):
        roots = tls
    elif not isinstance(tls, bool):
        try:
            roots = Path(tls).read_bytes()
        except OSError as error:
            raise InvalidArgument(f"cannot read the TLS CA certificate {tls}: {error}") from None
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )


def _write_selected(path: str | os.PathLike[str], selected: str, select: str, store: str) -> None:
    """Write to `selected` the parameters of the file `path` that `select` picks, reading only
    their bytes."""
    from paramstore.server.errors import StoreError
    from paramstore.server.storage import codec

    try:
        matches = re.compile(select).match
    except re.error as error:
        raise InvalidArgument(f"invalid select regex {select!r}: {error}") from None
    try:
        loaded = checkpoint.open_mapped(path, select=lambda name: matches(name) is not None)
        if not loaded.tensors:
            raise InvalidArgument(f"{os.fspath(path)} has no tensor matching {select!r}")
        tensors, aliases, metadata = codec.encode_selected(
            loaded, lambda name: matches(name) is not None, store)
        checkpoint.write(selected, tensors, aliases=aliases, metadata=metadata)
    except (checkpoint.CheckpointError, StoreError) as error:
        raise InvalidArgument(f"{os.fspath(path)}: {error}") from None


@contextlib.contextmanager
def _logged(method: str) -> Iterator[None]:
    """One DEBUG line per call (method, status, duration); a `grpc.RpcError` leaves as the
    SDK's error for its status."""
    started, status = time.perf_counter(), "OK"
    try:
        yield
    except grpc.RpcError as error:
        status = error.code().name
        raise from_rpc_error(error) from None
    except ParamstoreError as error:
        status = error.code
        raise
    finally:
        _log.debug("method=%s status=%s duration_ms=%.1f", method, status,
                   (time.perf_counter() - started) * 1000)
