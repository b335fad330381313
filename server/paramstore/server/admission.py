"""Admission: who may hold the server's threads, for how long, and with how many bytes.

A few stalled calls must never freeze the server. Every call goes through `Admission`, a
server interceptor that:

- bounds the calls in flight per caller (a known token; the peer's address otherwise) and in
  total, refusing the call over a bound with RESOURCE_EXHAUSTED before it does any work;
- receives every request itself, as a stream, so that a client that opens a call and sends
  nothing (or stops half-way through a push) is watched like any other stall;
- cancels a call that waits on its client for longer than `idle_timeout` seconds: a request
  message that does not come, or a reply the client does not read. Time spent working (a
  training step waiting for other workers, a snapshot being written) does not count;
- keeps health checks answering: they have slots of their own, and the thread pool is sized to
  hold every admitted call plus those slots (`CallLimits.threads`).

The bytes that requests in flight may hold in memory (push buffers) are bounded by
`InflightBytes`, which the servicer asks before it allocates a buffer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from paramstore.proto import wire
from paramstore.server import failures
from paramstore.server.errors import InvalidArgument, ResourceExhausted

_log = logging.getLogger("paramstore.server")

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
DEFAULT_MAX_CALLS = 64
DEFAULT_MAX_CALLS_PER_CALLER = 16
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_INFLIGHT_BYTES = 4 << 30
HEALTH_SLOTS = 8  # concurrent health checks, beside `max_calls`
HEALTH_SLOTS_PER_CALLER = 2  # so that one caller cannot take them all
SPARE_THREADS = 8  # for refusals, which run on a pool thread too
Take = Callable[[int, str], None]  # reserves bytes for a request: take(size, what)


@dataclass(frozen=True)
class CallLimits:
    """Bounds on calls in flight. Defaults suit a team's server left running for a month."""

    max_calls: int = DEFAULT_MAX_CALLS
    max_calls_per_caller: int = DEFAULT_MAX_CALLS_PER_CALLER
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds a call may wait on its client
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES

    def __post_init__(self) -> None:
        if self.max_calls < 1 or self.max_calls_per_caller < 1 or self.max_inflight_bytes < 1:
            raise ValueError("max_calls, max_calls_per_caller and max_inflight_bytes must be "
                             "positive")
        if not (math.isfinite(self.idle_timeout) and self.idle_timeout > 0):
            raise ValueError(f"idle_timeout must be a positive number of seconds, "
                             f"got {self.idle_timeout}")

    @property
    def threads(self) -> int:
        """Worker threads the server needs so that no admitted call ever waits for one."""
        return self.max_calls + HEALTH_SLOTS + SPARE_THREADS


class InflightBytes:
    """Bytes held by requests being received, against one bound for the whole server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def account(self) -> Iterator[Take]:
        """A `take(size, what)` function for one request; its bytes are given back on exit.
        `take` raises `ResourceExhausted` when the server holds too much already."""
        taken = 0

        def take(size: int, what: str) -> None:
            nonlocal taken
            with self._lock:
                if self.held + size > self.limit:
                    raise ResourceExhausted(
                        f"{what} needs {size} bytes while requests in flight hold {self.held} "
                        f"of the server's {self.limit}; retry later"
                    )
                self.held += size
                taken += size

        try:
            yield take
        finally:
            with self._lock:
                self.held -= taken


class _Call:
    """One admitted call: whether it is waiting on its client, and since when."""

    __slots__ = ("method", "caller", "context", "waiting_since")

    def __init__(self, method: str, caller: str, context: grpc.ServicerContext) -> None:
        self.method = method
        # Health checks count apart: a caller's busy calls never keep its probes out.
        self.caller = f"{caller} (health)" if method == HEALTH_CHECK else caller
        self.context = context
        self.waiting_since: float | None = None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        self.waiting_since = time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None

    def requests(self, iterator: Iterator[Any]) -> Iterator[Any]:
        while True:
            with self.waiting():
                request = next(iterator, None)
            if request is None:
                return
            yield request

    def replies(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for reply in iterator:
            with self.waiting():  # until gRPC asks for the next one: the reply was sent
                yield reply


class Admission(grpc.ServerInterceptor):
    """The interceptor described in the module's docstring. `caller_of(metadata, peer)` names
    the caller a call counts against."""

    def __init__(self, limits: CallLimits, caller_of: Callable[[dict[str, Any], str], str]):
        self.limits = limits
        self._caller_of = caller_of
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._per_caller: Counter[str] = Counter()
        self._health = 0
        self._stopped = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="paramstore-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def close(self) -> None:
        self._stopped.set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        metadata = dict(details.invocation_metadata or ())
        return _streamed(handler, lambda context: self._admit(details.method, metadata, context))

    # ---- admission -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _admit(self, method: str, metadata: dict[str, Any],
               context: grpc.ServicerContext) -> Iterator[_Call]:
        call = _Call(method, self._caller_of(metadata, context.peer()), context)
        refusal = self._enter(call)
        if refusal:
            _log.warning("refused %s from %s: %s", method, call.caller, refusal)
            context.set_trailing_metadata(((wire.ERROR_KEY, "ResourceExhausted"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        try:
            yield call
        finally:
            self._leave(call)

    def _enter(self, call: _Call) -> str | None:
        limits = self.limits
        health = call.method == HEALTH_CHECK
        per_caller = HEALTH_SLOTS_PER_CALLER if health else limits.max_calls_per_caller
        with self._lock:
            if self._per_caller[call.caller] >= per_caller:
                return (f"this caller has {per_caller} calls in flight, the server's limit "
                        "per caller; retry when one has finished")
            if health:
                if self._health >= HEALTH_SLOTS:
                    return "too many health checks in flight; retry shortly"
                self._health += 1
            elif len(self._calls) - self._health >= limits.max_calls:
                return (f"the server has {limits.max_calls} calls in flight, its limit; "
                        "retry shortly")
            self._per_caller[call.caller] += 1
            self._calls.add(call)
        return None

    def _leave(self, call: _Call) -> None:
        with self._lock:
            self._calls.discard(call)
            self._per_caller[call.caller] -= 1
            if not self._per_caller[call.caller]:
                del self._per_caller[call.caller]
            if call.method == HEALTH_CHECK:
                self._health -= 1

    # ---- the watchdog --------------------------------------------------------------------------

    def _watch(self) -> None:
        period = min(1.0, self.limits.idle_timeout / 4)
        while not self._stopped.wait(period):
            deadline = time.monotonic() - self.limits.idle_timeout
            with self._lock:
                stalled = [call for call in self._calls
                           if call.waiting_since is not None and call.waiting_since < deadline]
            for call in stalled:
                _log.warning("cancelled %s from %s: its client made no progress for %g s",
                             call.method, call.caller, self.limits.idle_timeout)
                call.waiting_since = None
                call.context.cancel()


class _Malformed:
    """A request message that could not be parsed; the call answers INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _streamed(handler: grpc.RpcMethodHandler,
              admit: Callable[[grpc.ServicerContext], Any]) -> grpc.RpcMethodHandler:
    """`handler` as a handler that receives its request(s) as a stream, under `admit`.

    The wire does not tell a unary request from a stream of one message, so every method can
    be served this way; it lets a stalled request be watched and cancelled. A message that
    does not parse is INVALID_ARGUMENT; any failure the handler did not answer itself is
    answered by `failures.unexpected`."""
    behaviour = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                 or handler.stream_stream)
    parse = handler.request_deserializer

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw) if parse is not None else raw
        except Exception as error:  # protobuf's DecodeError, or a check of ours
            return _Malformed(error)

    def checked(call: _Call, requests: Iterator[Any]) -> Iterator[Any]:
        for request in call.requests(requests):
            if isinstance(request, _Malformed):
                raise InvalidArgument(f"a {call.method.rsplit('/', 1)[-1]} request message is "
                                      "malformed (not the message the method takes)")
            yield request

    def request_of(call: _Call, requests: Iterator[Any]) -> Any:
        received = checked(call, requests)
        if handler.request_streaming:
            return received
        first = next(received, None)
        if first is None or next(received, None) is not None:
            raise InvalidArgument(f"{call.method} takes exactly one request message")
        return first

    @contextlib.contextmanager
    def answered(call: _Call, context: grpc.ServicerContext) -> Iterator[None]:
        try:
            yield
        except InvalidArgument as error:
            context.set_trailing_metadata(((wire.ERROR_KEY, "InvalidArgument"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception as error:
            if context.code() is not None or not context.is_active():
                raise  # answered already (an abort), or nobody is listening
            answer = failures.unexpected(call.method, error)
            context.set_trailing_metadata(((wire.ERROR_KEY, answer.kind),))
            context.abort(answer.code, answer.message)

    def answer(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        with admit(context) as call, answered(call, context):
            return behaviour(request_of(call, requests), context)

    def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        with admit(context) as call, answered(call, context):
            yield from call.replies(behaviour(request_of(call, requests), context))

    make = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
            else grpc.stream_unary_rpc_method_handler)
    return make(stream if handler.response_streaming else answer,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer)
