"""The server in three steps: `create_server()` builds and binds it, `serve()` runs it until
SIGTERM or SIGINT, `main()` parses the command line flags."""

from __future__ import annotations

import argparse
import hmac
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from paramstore.proto import chunks
from paramstore.proto.v1 import paramstore_pb2, paramstore_pb2_grpc
from paramstore.server.errors import StoreError
from paramstore.server.registry import DEFAULT_MAX_TENSOR_BYTES, StoreRegistry
from paramstore.server.servicer import ERROR_KEY, ParamStoreServicer

_log = logging.getLogger("paramstore.server")

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATA_DIR = "./paramstore-data"
SHUTDOWN_GRACE_SECONDS = 30.0
SERVICE_NAME = paramstore_pb2.DESCRIPTOR.services_by_name["ParamStore"].full_name
_HEALTH_PREFIX = "/grpc.health.v1.Health/"


class ParamStoreServer:
    """A bound, not yet started server: `start()`, `stop(grace)`, `wait_for_termination()`."""

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer,
                 registry: StoreRegistry) -> None:
        self.grpc_server = server
        self.health = health_servicer
        self.registry = registry

    def start(self) -> None:
        self.grpc_server.start()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = SHUTDOWN_GRACE_SECONDS) -> threading.Event:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within `grace`
        seconds. Returns an event set once the server has stopped."""
        self.health.enter_graceful_shutdown()
        return self.grpc_server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops or `timeout` passes; True when it timed out."""
        return self.grpc_server.wait_for_termination(timeout)


def create_server(
    address: str = DEFAULT_ADDRESS,
    *,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    token: str | None = None,
    tls: tuple[bytes, bytes] | None = None,
    keep: int = 0,
    max_workers: int = 32,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    max_import_bytes: int = 1 << 40,
) -> tuple[ParamStoreServer, int]:
    """Build a server on `address` (port 0 picks a free one) and return it with its port.

    Stores are recovered from `data_dir`. `token`: every RPC but health needs
    `authorization: Bearer <token>`. `tls`: (certificate chain PEM, private key PEM).
    `keep`: snapshots kept per store (0: all). Raises `RuntimeError` when the address cannot
    be bound.
    """
    registry = StoreRegistry(data_dir, keep=keep, max_tensor_bytes=max_tensor_bytes)
    interceptors = [_BearerToken(token)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="paramstore"),
        interceptors=interceptors,
    )
    _add_servicer(ParamStoreServicer(registry, max_import_bytes=max_import_bytes), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if tls is not None:
        credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    return ParamStoreServer(server, health_servicer, registry), port


def _add_servicer(servicer: ParamStoreServicer, server: grpc.Server) -> None:
    """Register the servicer as the generated code does, with chunk-aware (de)serializers for
    the tensor streams (`paramstore.proto.chunks`)."""
    captured = _HandlerCapture()
    paramstore_pb2_grpc.add_ParamStoreServicer_to_server(servicer, captured)
    handlers = dict(captured.handlers)
    for method in ("Push", "SetData"):
        handlers[method] = grpc.stream_unary_rpc_method_handler(
            getattr(servicer, method),
            request_deserializer=chunks.deserializer(paramstore_pb2.PushRequest),
            response_serializer=paramstore_pb2.PushResponse.SerializeToString,
        )
    handlers["Pull"] = grpc.unary_stream_rpc_method_handler(
        servicer.Pull,
        request_deserializer=paramstore_pb2.PullRequest.FromString,
        response_serializer=chunks.serialize,
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


def serve(address: str = DEFAULT_ADDRESS, **options: Any) -> None:
    """Run a server until SIGTERM or SIGINT, then drain calls in flight and return.

    `options` are `create_server`'s."""
    server, port = create_server(address, **options)
    server.start()
    host = address.rsplit(":", 1)[0]
    _log.info("paramstore serving on %s:%d (data in %s)", host, port,
              Path(options.get("data_dir", DEFAULT_DATA_DIR)).resolve())

    def shut_down(signum: int, frame: Any) -> None:
        _log.info("received %s: draining calls in flight", signal.Signals(signum).name)
        server.stop(SHUTDOWN_GRACE_SECONDS)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, shut_down)
    # Waiting in slices keeps the main thread able to run the signal handlers.
    while server.wait_for_termination(timeout=0.5):  # True: timed out, still running
        pass
    _log.info("paramstore stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """`paramstore serve` flags; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="paramstore serve", description=serve.__doc__)
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help=f"host:port to listen on (default {DEFAULT_ADDRESS})")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"folder of the snapshots (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--token-file", type=Path,
                        help="file holding the bearer token every client must send")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key (with --tls-cert)")
    parser.add_argument("--keep", type=int, default=0,
                        help="snapshots kept per store, oldest deleted first (default 0: all)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.keep < 0:
        parser.error("--keep must be 0 (keep all) or positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        token = _read_token(args.token_file) if args.token_file else None
        tls = (args.tls_cert.read_bytes(), args.tls_key.read_bytes()) if args.tls_cert else None
        serve(args.address, data_dir=args.data_dir, token=token, tls=tls, keep=args.keep)
    except (OSError, RuntimeError, ValueError, StoreError) as error:
        _log.error("paramstore serve: %s", error)
        return 1
    return 0


def _read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


class _BearerToken(grpc.ServerInterceptor):
    """Refuses every call but health checks unless it carries `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(_HEALTH_PREFIX):
            return handler
        sent = dict(details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(str(sent).encode(), self._expected):
            return handler
        return _refusal(handler, details.method)


def _refusal(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""
    started = time.perf_counter()

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        _log.info("store=- method=%s status=UNAUTHENTICATED duration_ms=%.1f",
                  method.rsplit("/", 1)[-1], (time.perf_counter() - started) * 1000)
        context.set_trailing_metadata(((ERROR_KEY, "Unauthenticated"),))
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong token: send metadata 'authorization: Bearer <token>' with the "
            "server's token",
        )

    def refuse_streaming(request: Any, context: grpc.ServicerContext) -> Any:
        refuse(request, context)
        yield  # never reached: makes this a generator, as streaming responses need

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    behaviour = refuse_streaming if handler.response_streaming else refuse
    return make(behaviour, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
