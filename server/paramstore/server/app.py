"""The server in three steps: `create_server()` builds and binds it, `serve()` runs it until
SIGTERM or SIGINT, `main()` parses the command line flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import threading
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from paramstore import logs
from paramstore._memory import avoid_huge_pages, keep_freed_memory, share_one_arena
from paramstore.proto import chunks, wire
from paramstore.proto.v1 import paramstore_pb2, paramstore_pb2_grpc
from paramstore.server.admission import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CALLS,
    DEFAULT_MAX_CALLS_PER_CALLER,
    DEFAULT_MAX_INFLIGHT_BYTES,
    Admission,
    CallLimits,
    InflightBytes,
)
from paramstore.server.auth import Token, TokenCheck, caller_naming, read_tokens
from paramstore.server.cluster import DEFAULT_LEASE_TTL, ClusterConfig, Replica
from paramstore.server.data_channel import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_READ_TIMEOUT,
    DataChannel,
    DataLimits,
    server_tls,
)
from paramstore.server.errors import StoreError
from paramstore.server.limits import DEFAULT_MAX_PARAMETERS, Limits, default_max_total_bytes
from paramstore.server.metrics import MetricsEndpoint, ServerMetrics
from paramstore.server.reflection import enable_reflection
from paramstore.server.registry import DEFAULT_MAX_TENSOR_BYTES, StoreRegistry
from paramstore.server.request_ids import RequestIds
from paramstore.server.servicer import ParamStoreServicer
from paramstore.server.step_calls import StepCalls
from paramstore.server.storage import Backend, open_backend
from paramstore.server.training import (
    DEFAULT_WORKER_LEASE,
    DEFAULT_WORKER_TIMEOUT,
    TrainingCoordinator,
)

_log = logging.getLogger("paramstore.server")

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATA_DIR = "./paramstore-data"
SHUTDOWN_GRACE_SECONDS = 30.0
DEFAULT_MAX_IMPORT_BYTES = 4 << 30  # an import is staged, then validated whole, before a commit
CLUSTER_MARKER = "cluster.json"  # in the storage of a cluster's replicas
SERVICE_NAME = paramstore_pb2.DESCRIPTOR.services_by_name["ParamStore"].full_name


class ParamStoreServer:
    """A bound, not yet started server: `start()`, `stop(grace)`, `wait_for_termination()`."""

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer,
                 registry: StoreRegistry, metrics: MetricsEndpoint | None = None,
                 admission: Admission | None = None,
                 training: TrainingCoordinator | None = None,
                 replica: Replica | None = None,
                 data_channel: DataChannel | None = None,
                 step_calls: StepCalls | None = None) -> None:
        self.grpc_server = server
        self.health = health_servicer
        self.registry = registry
        self.metrics = metrics  # the `/metrics` endpoint, when the server has one
        self.admission = admission
        self.training = training
        self.replica = replica  # when the server is one replica of a cluster
        self.data_channel = data_channel  # training steps outside gRPC, when it has one
        self.step_calls = step_calls or StepCalls()  # the servicer's PushPullSteps calls

    def start(self) -> None:
        """Serve; a replica joins its cluster and takes the stores placed on it first."""
        self.grpc_server.start()
        if self.data_channel is not None:
            self.data_channel.start()
        if self.replica is not None:
            self.replica.start(self.registry)
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = SHUTDOWN_GRACE_SECONDS) -> threading.Event:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within `grace`
        seconds, then finish the periodic snapshots being written. Returns an event set once
        all of that is done."""
        self.health.enter_graceful_shutdown()
        if self.metrics is not None:
            self.metrics.close()
        if self.replica is not None:  # a last snapshot of each store, then another takes it
            self.replica.close()
        calls_done = self.grpc_server.stop(grace)
        # A worker's step stream idle between steps is not worth a wait.
        _log.info("ended %d training step streams idle between steps; steps begun finish",
                  self.step_calls.close())
        if self.data_channel is not None:
            self.data_channel.close()
        stopped = threading.Event()

        def finish() -> None:
            calls_done.wait()
            if self.data_channel is not None:
                self.data_channel.abort()
            if self.training is not None:
                self.training.close()
            if self.admission is not None:
                self.admission.close()
            stopped.set()

        threading.Thread(target=finish, name="paramstore-stop", daemon=True).start()
        return stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops or `timeout` passes; True when it timed out."""
        return self.grpc_server.wait_for_termination(timeout)


def create_server(
    address: str = DEFAULT_ADDRESS,
    *,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    s3_endpoint: str | None = None,
    s3_timeout: float = 30.0,
    token: str | Sequence[Token] | None = None,
    tls: tuple[bytes, bytes] | None = None,
    tls_client_ca: bytes | None = None,
    keep: int = 0,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    max_import_bytes: int = DEFAULT_MAX_IMPORT_BYTES,
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
    worker_lease: float = DEFAULT_WORKER_LEASE,
    snapshot_every: int = 0,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    limits: Limits | None = None,
    calls: CallLimits | None = None,
    cluster: ClusterConfig | None = None,
    data_port: int | None = 0,
    data_limits: DataLimits | None = None,
) -> tuple[ParamStoreServer, int]:
    """Build a server on `address` (port 0 picks a free one) and return it with its port.

    Stores are recovered from `data_dir`, a folder or `s3://BUCKET[/PREFIX]` (`s3_endpoint`
    overrides `AWS_ENDPOINT_URL`; an S3 request stalled `s3_timeout` seconds fails). `token`:
    every RPC but health needs
    `authorization: Bearer <token>`; a list of `Token`s accepts any of them, a read-only one
    only for reads (`paramstore.server.auth`). `tls`: (certificate chain PEM, private key
    PEM). `tls_client_ca`: with `tls`, clients must present a certificate signed by this CA
    (PEM), mutual TLS.
    `limits`: bounds on stores, parameters and names (`paramstore.server.limits`; tensors are
    bounded by `max_tensor_bytes`). `keep`: snapshots kept per store (0: all).
    `calls`: bounds on calls in flight, per caller and in total, on how long a call may wait
    on its client and on the bytes requests in flight may hold (`paramstore.server.admission`).
    `metrics_port`: serve Prometheus metrics at `http://metrics_host:PORT/metrics` (0: a free
    port; the host is loopback unless told otherwise). `cluster`: the server is one replica
    of several coordinated by etcd (`paramstore.server.cluster`); `data_dir` must then be
    object storage every replica shares, and an empty `advertise` means the bound address.
    `data_port`: the port of the data channel for training steps, on the address's host (0: a
    free one; None: no data channel), bounded by `data_limits`
    (`paramstore.server.data_channel`; its idle timeout is `calls`'s).
    Raises `RuntimeError` when the address cannot be bound (or is in use by another server),
    `OSError` when the metrics or data port cannot, `ValueError` for a cluster on a local
    folder.
    """
    calls = calls or CallLimits()
    replica = None
    backend = open_backend(data_dir, s3_endpoint=s3_endpoint, s3_timeout=s3_timeout)
    if cluster is not None:
        if "://" not in str(data_dir):
            raise ValueError(f"--cluster needs storage every replica shares (--data-dir "
                             f"s3://BUCKET/PREFIX), not the local folder {str(data_dir)!r}")
        replica = Replica(cluster, backend)
    _check_cluster_marker(backend, cluster)
    registry = StoreRegistry(data_dir, keep=keep, max_tensor_bytes=max_tensor_bytes,
                             limits=limits, backend=replica.backend if replica else backend,
                             ownership=replica)
    tokens = [Token(token)] if isinstance(token, str) else list(token or ())
    admission = Admission(calls, caller_naming(tokens))
    # Outermost first: metrics count every call, refused ones too; admission bounds and
    # watches every call, before its token is even checked.
    interceptors: list[grpc.ServerInterceptor] = [admission]
    if tokens:
        interceptors.append(TokenCheck(tokens))
    request_ids = RequestIds()
    interceptors.append(request_ids)  # innermost: only calls let in are remembered
    metrics = ServerMetrics(registry) if metrics_port is not None else None
    if metrics is not None:
        interceptors.insert(0, metrics.interceptor())
    server = grpc.server(
        # Enough threads for every admitted call: a stalled call can hold only its own.
        futures.ThreadPoolExecutor(max_workers=calls.threads, thread_name_prefix="paramstore"),
        interceptors=interceptors,
        # gRPC lets a second server bind a port in use and splits the clients between them.
        options=[("grpc.so_reuseport", 0)],
    )
    # Training: a sync step waits `worker_timeout` s for missing workers; `snapshot_every` N
    # steps the store and its optimizer state are snapshotted (0: never).
    training = TrainingCoordinator(
        registry, worker_timeout=worker_timeout, snapshot_every=snapshot_every,
        lease=worker_lease,
    )
    if replica is not None:  # a store that moves away ends its training here
        replica.on_release.append(lambda store: training.end(store, moved=True))
    servicer = ParamStoreServicer(registry, max_import_bytes=max_import_bytes,
                                  training=training,
                                  inflight=InflightBytes(calls.max_inflight_bytes),
                                  idle_timeout=calls.idle_timeout, request_ids=request_ids)
    _add_servicer(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    enable_reflection((SERVICE_NAME, health.SERVICE_NAME), server)
    credentials = None
    if tls is not None:
        credentials = grpc.ssl_server_credentials(
            [(tls[1], tls[0])], root_certificates=tls_client_ca,
            require_client_auth=tls_client_ca is not None,
        )
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError:  # newer gRPC raises where older ones returned 0
        port = 0
    if port == 0:
        admission.close()
        raise RuntimeError(f"cannot listen on {address}: the address is in use (another "
                           "server?) or not an address of this machine; choose another with "
                           "--address HOST:PORT")
    data_channel = None
    if data_port is not None:
        try:
            data_channel = _data_channel(servicer, address, data_port, data_limits, calls,
                                         tls, tls_client_ca)
        except OSError:
            admission.close()
            server.stop(None)  # frees the gRPC port it bound
            raise
        servicer.data_channel = data_channel
        if metrics is not None:
            data_channel.record_step = metrics.record
            data_channel.count_bytes = metrics.count_bytes
    endpoint = None
    if metrics is not None and metrics_port is not None:
        endpoint = metrics.serve_http(metrics_host, metrics_port)
    if replica is not None and not replica.address:
        replica.set_address(f"{address.rsplit(':', 1)[0]}:{port}")
    if replica is not None and data_channel is not None:
        data_channel.advertised_host = replica.address.rsplit(":", 1)[0]
    return ParamStoreServer(server, health_servicer, registry, endpoint, admission,
                            training, replica, data_channel, servicer.step_calls), port


def _data_channel(servicer: ParamStoreServicer, address: str, port: int,
                  limits: DataLimits | None, calls: CallLimits,
                  tls: tuple[bytes, bytes] | None, tls_client_ca: bytes | None) -> DataChannel:
    """The data channel on `address`'s host: its calls' idle timeout, their TLS."""
    limits = dataclasses.replace(limits or DataLimits(), idle_timeout=calls.idle_timeout)
    context = server_tls(tls[0], tls[1], tls_client_ca) if tls is not None else None
    return DataChannel(servicer, address.rsplit(":", 1)[0], port, limits, context)


def _check_cluster_marker(backend: Backend, cluster: ClusterConfig | None) -> None:
    """A cluster's commit records are in etcd: its storage is marked, and a single server
    refuses it (it would see data without records, and remove it as never committed)."""
    try:
        marked = backend.read(CLUSTER_MARKER)
    except FileNotFoundError:
        marked = None
    if cluster is None and marked is not None:
        raise ValueError(f"{backend.location()} belongs to a cluster of replicas ("
                         f"{marked.decode(errors='replace')}); serve it with --cluster")
    if cluster is not None and marked is None:
        backend.create(CLUSTER_MARKER, json.dumps({"cluster": cluster.url}).encode())


def _add_servicer(servicer: ParamStoreServicer, server: grpc.Server) -> None:
    """Register the servicer as the generated code does, with chunk-aware (de)serializers for
    the tensor streams (`paramstore.proto.chunks`)."""
    captured = _HandlerCapture()
    paramstore_pb2_grpc.add_ParamStoreServicer_to_server(servicer, captured)
    handlers = dict(captured.handlers)
    for method in {*wire.PUSH_METHODS, *wire.PULL_METHODS}:
        pushes, pulls = method in wire.PUSH_METHODS, method in wire.PULL_METHODS
        make = {
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
        }[(pushes, pulls)]
        handlers[method] = make(
            getattr(servicer, method),
            request_deserializer=chunks.deserializer(paramstore_pb2.PushRequest) if pushes
            else paramstore_pb2.PullRequest.FromString,
            response_serializer=chunks.serialize if pulls
            else paramstore_pb2.PushResponse.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class _HandlerCapture:
    """Stands in for a server to collect the generated code's method handlers."""

    handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.handlers = handlers


def serve(address: str = DEFAULT_ADDRESS, *, port_file: Path | None = None,
          **options: Any) -> None:
    """Run a server until SIGTERM or SIGINT, then drain calls in flight and return.

    `port_file`: once serving, write the bound `host:port` there (replacing the file whole),
    so that whoever started the server with port 0 knows where it listens. `options` are
    `create_server`'s."""
    # Every push allocates its tensors anew and frees the ones it replaces: reusing the freed
    # blocks spares page-faulting each received byte's memory in again.
    keep_freed_memory()
    avoid_huge_pages()
    share_one_arena()  # before `create_server` starts gRPC's threads
    server, port = create_server(address, **options)
    server.start()
    host = address.rsplit(":", 1)[0]
    if port_file is not None:
        _write_replacing(port_file, f"{host}:{port}\n")
    _log.info("paramstore serving on %s:%d (data in %s)", host, port,
              server.registry.catalog.backend.location())
    if server.metrics is not None:
        _log.info("paramstore metrics on http://%s:%d/metrics", host, server.metrics.port)

    stopping: list[threading.Event] = []

    def shut_down(signum: int, frame: Any) -> None:
        _log.info("received %s: draining calls in flight", signal.Signals(signum).name)
        stopping.append(server.stop(SHUTDOWN_GRACE_SECONDS))

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, shut_down)
    # Waiting in slices keeps the main thread able to run the signal handlers.
    while server.wait_for_termination(timeout=0.5):  # True: timed out, still running
        pass
    for stopped in stopping:  # periodic snapshots being written are finished, not cut
        stopped.wait(SHUTDOWN_GRACE_SECONDS)
    _log.info("paramstore stopped")


def _write_replacing(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it: a reader sees no file
    or the whole one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """`paramstore serve` flags; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="paramstore serve",
        description="Serve parameter stores over gRPC until SIGTERM or Ctrl-C, then let calls "
                    f"in flight finish (up to {SHUTDOWN_GRACE_SECONDS:g} s) and stop. Stores "
                    "and their snapshots are kept in --data-dir. The limits below hold by default; "
                    "TLS and tokens are off until given.")
    parser.add_argument("--address", type=_listen_address, default=DEFAULT_ADDRESS,
                        help=f"host:port to listen on (default {DEFAULT_ADDRESS}; port 0: a "
                             "free one)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                        help="where stores are kept: a local folder or s3://BUCKET/PREFIX "
                             f"(default {DEFAULT_DATA_DIR})")
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="endpoint of the S3-compatible storage (default: AWS_ENDPOINT_URL, "
                             "else AWS S3)")
    parser.add_argument("--s3-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="seconds an S3 request may stall before it fails with UNAVAILABLE "
                             "(default 30)")
    parser.add_argument("--port-file", type=Path, metavar="FILE",
                        help="once serving, write the bound host:port to FILE (for --address "
                             "HOST:0)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="file of bearer tokens, one per line: 'TOKEN' or 'TOKEN read-only'")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help="PEM certificate chain (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM",
                        help="PEM private key (with --tls-cert)")
    parser.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                        help="PEM CA certificate: clients must present a certificate it signed "
                             "(mutual TLS; needs --tls-cert)")
    parser.add_argument("--keep", type=int, default=0, metavar="N",
                        help="snapshots kept per store, oldest deleted first (default 0: all)")
    parser.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                        help="snapshot a trained store and its optimizer every N steps "
                             "(default 0: never)")
    parser.add_argument("--worker-timeout", type=float, default=DEFAULT_WORKER_TIMEOUT,
                        metavar="SECONDS",
                        help="seconds a sync training step waits for missing workers before "
                             f"it is aborted (default {DEFAULT_WORKER_TIMEOUT:g})")
    parser.add_argument("--worker-lease", type=float, default=DEFAULT_WORKER_LEASE,
                        metavar="SECONDS",
                        help="seconds a training worker keeps its rank without a heartbeat; "
                             "a worker that died frees it then "
                             f"(default {DEFAULT_WORKER_LEASE:g})")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics "
                             "(0: a free port; default: no metrics)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="interface of the metrics endpoint (default 127.0.0.1: this "
                             "machine only; the metrics name every store and its size)")
    logs.add_log_level_flag(parser, "INFO", "DEBUG adds a line per call; INFO logs starts, stops, "
                                       "recoveries, retention and failures")
    _add_cluster_flags(parser)
    _add_limit_flags(parser)
    _add_call_flags(parser)
    _add_data_flags(parser)
    args = parser.parse_args(argv)
    if args.snapshot_every < 0 or not 0 < args.worker_timeout < float("inf") \
            or not 0 < args.worker_lease < float("inf"):
        parser.error("--snapshot-every must be 0 or positive, --worker-timeout and "
                     "--worker-lease positive numbers of seconds")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if args.keep < 0:
        parser.error("--keep must be 0 (keep all) or positive")
    for flag, path in (("--token-file", args.token_file), ("--tls-cert", args.tls_cert),
                       ("--tls-key", args.tls_key), ("--tls-client-ca", args.tls_client_ca)):
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    logs.configure(args.log_level)
    try:
        token = read_tokens(args.token_file) if args.token_file else None
        tls = (args.tls_cert.read_bytes(), args.tls_key.read_bytes()) if args.tls_cert else None
        client_ca = args.tls_client_ca.read_bytes() if args.tls_client_ca else None
        serve(args.address, port_file=args.port_file, data_dir=args.data_dir,
              s3_endpoint=args.s3_endpoint, s3_timeout=args.s3_timeout,
              token=token, tls=tls,
              tls_client_ca=client_ca, keep=args.keep, limits=_limits(args),
              max_tensor_bytes=args.max_tensor_bytes, max_import_bytes=args.max_import_bytes,
              worker_timeout=args.worker_timeout, worker_lease=args.worker_lease,
              snapshot_every=args.snapshot_every,
              metrics_port=args.metrics_port, metrics_host=args.metrics_host,
              calls=_call_limits(args), cluster=_cluster(args, parser),
              data_port=args.data_port, data_limits=_data_limits(args))
    except (OSError, RuntimeError, ValueError, StoreError) as error:
        _log.error("paramstore serve: %s", error)
        return 1
    return 0


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_argument_group(
        "several replicas (each store owned by one live replica through an etcd lease)")
    cluster.add_argument("--cluster", metavar="etcd://HOST:PORT[/PREFIX]",
                         help="join the replicas coordinated by this etcd cluster (several "
                              "endpoints: etcd://H1:P1,H2:P2/PREFIX); needs --data-dir s3://...")
    cluster.add_argument("--advertise", metavar="HOST:PORT",
                         help="the address clients and other replicas reach this one at "
                              "(default: the bound --address)")
    cluster.add_argument("--lease-ttl", type=float, default=DEFAULT_LEASE_TTL,
                         metavar="SECONDS",
                         help="seconds a silent replica keeps its stores before another takes "
                              f"them (default {DEFAULT_LEASE_TTL:g})")


def _cluster(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ClusterConfig | None:
    if args.cluster is None:
        if args.advertise is not None:
            parser.error("--advertise goes with --cluster")
        return None
    if not 2 <= args.lease_ttl < 3600:
        parser.error("--lease-ttl must be between 2 and 3600 seconds")
    host, _, port = (args.advertise or "").rpartition(":")
    if args.advertise is not None and (not host or not port.isdigit() or port == "0"):
        parser.error(f"--advertise {args.advertise!r} must be HOST:PORT, where clients reach "
                     "this replica")
    return ClusterConfig(args.cluster, args.advertise or "", args.lease_ttl)


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group("limits (requests over them get RESOURCE_EXHAUSTED)")
    limits.add_argument("--max-store-bytes", type=int, default=0, metavar="BYTES",
                        help="bytes per store (default 0: only the total bound)")
    limits.add_argument("--max-total-bytes", type=int, default=default_max_total_bytes(),
                        metavar="BYTES",
                        help="bytes in all stores together (default: half this machine's "
                             "memory; 0: unlimited)")
    limits.add_argument("--max-parameters", type=int, default=DEFAULT_MAX_PARAMETERS,
                        metavar="N", help="parameters per store "
                                          f"(default {DEFAULT_MAX_PARAMETERS}; 0: unlimited)")
    limits.add_argument("--max-name-length", type=int, default=0, metavar="N",
                        help="characters of a parameter name (default 0: the protocol's 1024)")
    limits.add_argument("--max-rank", type=int, default=0, metavar="N",
                        help="dimensions of a tensor (default 0: the protocol's 64)")
    limits.add_argument("--max-tensor-bytes", type=int, default=DEFAULT_MAX_TENSOR_BYTES,
                        metavar="BYTES",
                        help=f"bytes of one tensor (default {DEFAULT_MAX_TENSOR_BYTES})")
    limits.add_argument("--max-import-bytes", type=int, default=DEFAULT_MAX_IMPORT_BYTES,
                        metavar="BYTES",
                        help="bytes of an imported snapshot file "
                             f"(default {DEFAULT_MAX_IMPORT_BYTES})")


def _add_call_flags(parser: argparse.ArgumentParser) -> None:
    calls = parser.add_argument_group(
        "calls in flight (a caller is a token, or a peer address when the server has none)")
    calls.add_argument("--max-calls", type=int, default=DEFAULT_MAX_CALLS, metavar="N",
                       help=f"calls in flight in total, health checks aside "
                            f"(default {DEFAULT_MAX_CALLS})")
    calls.add_argument("--max-calls-per-caller", type=int, default=DEFAULT_MAX_CALLS_PER_CALLER,
                       metavar="N", help="calls in flight per caller "
                                         f"(default {DEFAULT_MAX_CALLS_PER_CALLER})")
    calls.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                       metavar="SECONDS",
                       help="cancel a call that waits this long on its client, for a request "
                            "or to take a reply (default "
                            f"{DEFAULT_IDLE_TIMEOUT:g})")
    calls.add_argument("--max-inflight-bytes", type=int, default=DEFAULT_MAX_INFLIGHT_BYTES,
                       metavar="BYTES", help="bytes that requests being received may hold "
                                             f"together (default {DEFAULT_MAX_INFLIGHT_BYTES})")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group(
        "the data channel (training steps of workers without shared memory, outside gRPC)")
    data.add_argument("--data-port", type=_data_port, default=0, metavar="PORT|off",
                      help="its TCP port on the --address host (default 0: a free one, told to "
                           "workers when they join; off: none, steps go through gRPC)")
    data.add_argument("--max-data-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                      metavar="N", help="data connections open at once "
                                        f"(default {DEFAULT_MAX_CONNECTIONS})")
    data.add_argument("--max-data-connections-per-peer", type=int,
                      default=DEFAULT_MAX_CONNECTIONS_PER_PEER, metavar="N",
                      help="data connections open at once from one peer address; a worker "
                           "refused steps through gRPC "
                           f"(default {DEFAULT_MAX_CONNECTIONS_PER_PEER})")
    data.add_argument("--data-read-timeout", type=float, default=DEFAULT_READ_TIMEOUT,
                      metavar="SECONDS",
                      help="seconds a worker has to send its ticket once connected, or a step "
                           f"header once begun (default {DEFAULT_READ_TIMEOUT:g})")


def _listen_address(text: str) -> str:
    # gRPC would listen on 443 for a bare host, and on the port modulo 65536 for a larger one.
    host, _, port = text.rpartition(":")
    if not host or "://" in host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with a port from 0 to "
                                         "65535 and no scheme, such as 127.0.0.1:50051")
    return text


def _data_port(text: str) -> int | None:
    if text.lower() in ("off", "-1"):
        return None
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535) or 'off'")
    return int(text)


def _data_limits(args: argparse.Namespace) -> DataLimits:
    return DataLimits(max_connections=args.max_data_connections,
                      max_connections_per_peer=args.max_data_connections_per_peer,
                      read_timeout=args.data_read_timeout)


def _call_limits(args: argparse.Namespace) -> CallLimits:
    return CallLimits(max_calls=args.max_calls, max_calls_per_caller=args.max_calls_per_caller,
                      idle_timeout=args.idle_timeout, max_inflight_bytes=args.max_inflight_bytes)


def _limits(args: argparse.Namespace) -> Limits:
    values = (args.max_store_bytes, args.max_total_bytes, args.max_parameters,
              args.max_name_length, args.max_rank)
    if min(values) < 0 or args.max_tensor_bytes <= 0 or args.max_import_bytes <= 0:
        raise ValueError("limits must be 0 (unlimited) or positive; --max-tensor-bytes and "
                         "--max-import-bytes positive")
    return Limits(max_store_bytes=args.max_store_bytes, max_total_bytes=args.max_total_bytes,
                  max_parameters=args.max_parameters, max_name_length=args.max_name_length,
                  max_rank=args.max_rank)
