"""At most once: a mutating call retried with the same request id gets the first reply.

The SDK gives each mutating call one id (`wire.REQUEST_ID_KEY`) that all its retries carry: a
reply lost with a dropped connection, or a replica that answered after the client gave up on it,
must not make the retry apply the call again. Replies of unary-response calls that succeeded
are kept for the `capacity` most recent ids, and no more of them than `max_bytes` (an
initialize's reply lists every name it filled: a caller could otherwise make the server hold
thousands of them); a retry arriving while the first attempt still runs waits for it. A failed
call changed nothing, so it is not kept: its retry runs again.
A snapshot also records its request id (`registry.snapshot`), so that a replica that took the
store over after a failover recognises a retried snapshot it never saw.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import grpc

from paramstore.proto.wire import READ_METHODS, REQUEST_ID_KEY

DEFAULT_CAPACITY = 4096
DEFAULT_MAX_BYTES = 64 << 20
_WAIT_SECONDS = 600.0
_LONGEST_KEPT = 128


def request_id(context: grpc.ServicerContext) -> str:
    """The call's request id ('' when it has none)."""
    return _bounded(dict(context.invocation_metadata() or ()).get(REQUEST_ID_KEY, ""))


def _bounded(value: object) -> str:
    """A request id as it is kept: a long one by its SHA-256, so two ids that share a long
    prefix never meet, and a kept id stays small."""
    text = str(value)
    if len(text) <= _LONGEST_KEPT:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Any = None
        self.size = 0  # the reply's serialized bytes, once kept


class RequestIds(grpc.ServerInterceptor):
    """Answers a repeated request id with the reply of its first, successful, attempt."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._calls: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._kept_bytes = 0

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        method = details.method.rsplit("/", 1)[-1]
        if handler is None or handler.response_streaming or method in READ_METHODS:
            return handler
        metadata = dict(details.invocation_metadata or ())
        identifier = str(metadata.get(REQUEST_ID_KEY, ""))
        if not identifier:
            return handler
        behaviour = handler.stream_unary if handler.request_streaming else handler.unary_unary

        def once(request: Any, context: grpc.ServicerContext) -> Any:
            return self.run(method, identifier, lambda: behaviour(request, context))

        make = grpc.stream_unary_rpc_method_handler if handler.request_streaming \
            else grpc.unary_unary_rpc_method_handler
        return make(once, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    def run(self, method: str, identifier: str, behaviour: Callable[[], Any]) -> Any:
        """`behaviour()`'s reply, or that of the first successful call of `method` under
        `identifier` (waited for while it runs). Also used by the data channel's pushes, so
        that a push cut off there and sent again as a Push applies once."""
        identifier = _bounded(identifier)
        if not identifier:
            return behaviour()
        key = (method, identifier)
        with self._lock:
            pending = self._calls.get(key)
            first = pending is None
            if first:
                pending = self._calls[key] = _Pending()
                while len(self._calls) > self.capacity:
                    self._kept_bytes -= self._calls.popitem(last=False)[1].size
        assert pending is not None
        if not first:
            pending.done.wait(_WAIT_SECONDS)
            if pending.reply is not None:
                return pending.reply
            return behaviour()  # the first attempt failed: run it again
        try:
            pending.reply = behaviour()
            self._keep(key, pending)
            return pending.reply
        except BaseException:
            with self._lock:
                self._calls.pop(key, None)
            raise
        finally:
            pending.done.set()

    def _keep(self, key: tuple[str, str], pending: _Pending) -> None:
        """Count a reply's bytes, dropping the oldest replies over `max_bytes`; one bigger than
        that alone is not kept (its waiters have it already)."""
        size = pending.reply.ByteSize() if hasattr(pending.reply, "ByteSize") else 0
        with self._lock:
            if self._calls.get(key) is not pending:
                return  # dropped meanwhile by the count bound
            if size > self.max_bytes:
                del self._calls[key]
                return
            pending.size = size
            self._kept_bytes += size
            while self._kept_bytes > self.max_bytes:
                self._kept_bytes -= self._calls.popitem(last=False)[1].size
