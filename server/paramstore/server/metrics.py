"""Prometheus metrics of one server: calls, bytes, store sizes and snapshot durations.

`ServerMetrics` holds its own collector registry (two servers in one process never mix their
numbers), a gRPC server interceptor that counts every call, and `serve_http()`, which exposes
the text format at `http://HOST:PORT/metrics` for `paramstore serve --metrics-port`.

Metrics:
- `paramstore_calls_total{method, status}`: finished calls of paramstore's own methods (health
  checks and reflection are not counted), by gRPC status name; each training step of the data
  channel counts as a call of method `DataChannel` (as a PushPull call carries one step);
- `paramstore_call_duration_seconds{method}`: a histogram of call (and data channel step)
  durations;
- `paramstore_received_bytes_total{method}`, `paramstore_sent_bytes_total{method}`: serialized
  message bytes (tensor chunks included); for `DataChannel`, the bytes of its steps (headers,
  tensors and statuses);
- `paramstore_snapshot_duration_seconds{operation}`: `take` and `restore` durations;
- `paramstore_stores`, `paramstore_store_bytes{store}`, `paramstore_store_parameters{store}`:
  read from the stores at every scrape;
- `paramstore_build_info{version, python, grpc}`, and prometheus_client's standard `process_*`,
  `python_info` and `python_gc_*` series.

Durations are histograms whose buckets reach half an hour: a large snapshot takes minutes.
No `_created` series is exported: Prometheus does not use them, and they double the counters.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from paramstore import __version__
from paramstore.proto.wire import SERVICE
from paramstore.server.registry import StoreRegistry

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                    300, 600, 1800)
_OWN_METHODS = f"/{SERVICE}/"
# Methods whose duration is a snapshot's, by the operation name they report.
_SNAPSHOT_OPERATIONS = {"TakeSnapshot": "take", "RestoreSnapshot": "restore"}
# (request streaming, response streaming) -> the handler's behaviour attribute, its factory.
_HANDLER_KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class ServerMetrics:
    """The metrics of the server serving `stores`; `interceptor()` goes to `grpc.server`."""

    def __init__(self, stores: StoreRegistry) -> None:
        disable_created_metrics()  # process-wide, as prometheus_client offers it
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        Info("paramstore_build", "The running paramstore: its version, Python's and gRPC's",
             registry=self.registry).info({"version": __version__,
                                           "python": platform.python_version(),
                                           "grpc": grpc.__version__})
        self.calls = Counter("paramstore_calls", "Finished calls by method and gRPC status",
                             ["method", "status"], registry=self.registry)
        self.durations = Histogram("paramstore_call_duration_seconds", "Call durations",
                                   ["method"], registry=self.registry,
                                   buckets=DURATION_BUCKETS)
        self.received = Counter("paramstore_received_bytes", "Request bytes received",
                                ["method"], registry=self.registry)
        self.sent = Counter("paramstore_sent_bytes", "Response bytes sent",
                            ["method"], registry=self.registry)
        self.snapshots = Histogram(
            "paramstore_snapshot_duration_seconds", "Snapshot take and restore durations",
            ["operation"], registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        self.registry.register(_StoreSizes(stores))

    def interceptor(self) -> grpc.ServerInterceptor:
        return _CallCounter(self)

    def serve_http(self, host: str, port: int) -> MetricsEndpoint:
        """Serve `/metrics` on `host:port` (0: a free port) from a daemon thread.
        Raises `OSError` when the address cannot be bound."""
        httpd, _ = start_http_server(port, addr=host, registry=self.registry)
        return MetricsEndpoint(httpd)

    def count_bytes(self, method: str, received: int, sent: int) -> None:
        if received:
            self.received.labels(method).inc(received)
        if sent:
            self.sent.labels(method).inc(sent)

    def record(self, method: str, status: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.calls.labels(method, status).inc()
        self.durations.labels(method).observe(elapsed)
        if method in _SNAPSHOT_OPERATIONS:
            self.snapshots.labels(_SNAPSHOT_OPERATIONS[method]).observe(elapsed)


class MetricsEndpoint:
    """A running `/metrics` HTTP server: its `host` and `port`, and `close()`."""

    def __init__(self, httpd: Any) -> None:
        self._httpd = httpd
        self.host: str = httpd.server_address[0]
        self.port: int = httpd.server_port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _StoreSizes(Collector):
    """Store gauges computed when scraped, so they are never stale."""

    def __init__(self, stores: StoreRegistry) -> None:
        self._stores = stores

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = GaugeMetricFamily("paramstore_stores", "Stores held by the server")
        sizes = GaugeMetricFamily("paramstore_store_bytes", "Tensor bytes held by a store",
                                  labels=["store"])
        parameters = GaugeMetricFamily("paramstore_store_parameters",
                                       "Parameters (aliases included) of a store",
                                       labels=["store"])
        stores = self._stores.list()
        count.add_metric([], len(stores))
        for store in stores:
            state = store.state()
            sizes.add_metric([store.name], state.data_bytes)
            parameters.add_metric([store.name], len(state.parameters))
        yield from (count, sizes, parameters)


class _CallCounter(grpc.ServerInterceptor):
    """Wraps every handler to count its call, status, duration and bytes."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not details.method.startswith(_OWN_METHODS):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        return _counted(handler, method, self._metrics)


def _counted(handler: grpc.RpcMethodHandler, method: str,
             metrics: ServerMetrics) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that reports to `metrics`."""
    streaming = handler.response_streaming
    attribute, make = _HANDLER_KINDS[(handler.request_streaming, streaming)]
    behaviour = getattr(handler, attribute)

    def answer(request: Any, context: grpc.ServicerContext) -> Any:
        started, status = time.perf_counter(), "UNKNOWN"
        try:
            reply = behaviour(request, context)
            status = _status(context)
            return reply
        except Exception:
            status = _status(context, failed=True)
            raise
        finally:
            metrics.record(method, status, started)

    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started, status = time.perf_counter(), "UNKNOWN"
        try:
            yield from behaviour(request, context)
            status = _status(context)
        except GeneratorExit:
            status = "CANCELLED"
            raise
        except Exception:
            status = _status(context, failed=True)
            raise
        finally:
            metrics.record(method, status, started)

    def deserialize(raw: bytes) -> Any:
        metrics.received.labels(method).inc(len(raw))
        return handler.request_deserializer(raw) if handler.request_deserializer else raw

    def serialize(message: Any) -> bytes:
        raw = handler.response_serializer(message) if handler.response_serializer else message
        metrics.sent.labels(method).inc(len(raw))
        return raw

    return make(stream if streaming else answer, request_deserializer=deserialize,
                response_serializer=serialize)


def _status(context: grpc.ServicerContext, *, failed: bool = False) -> str:
    """The status a call ended with: the code it set or aborted with; an exception without one
    is reported by gRPC as UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"
