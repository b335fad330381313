"""Bearer tokens: the token file, and the interceptor that checks every call against it.

Token file format, one token per line:

    # comments and blank lines are ignored
    s3cr3t-writer-token
    an0ther-token read-only

A line is a token, optionally followed by whitespace and `read-only`. A full token may call
everything; a read-only token may only read (pull, list stores, parameters, ties and
snapshots, collect_params, export a snapshot; server reflection) and gets `PERMISSION_DENIED`
for anything else.
A missing or unknown token gets `UNAUTHENTICATED`. Health checks need no token.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from paramstore.proto.wire import ERROR_KEY, READ_METHODS, path
from paramstore.server import reflection

_log = logging.getLogger("paramstore.server")

READ_ONLY_MARK = "read-only"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
_READ_PATHS = frozenset(map(path, READ_METHODS))


@dataclass(frozen=True)
class Token:
    """One accepted token; `read_only` limits it to `READ_METHODS`."""

    secret: str
    read_only: bool = False


def parse_tokens(text: str, source: str = "token file") -> list[Token]:
    """The tokens of a token file's text. Raises `ValueError` for a malformed line or a file
    without any token."""
    tokens = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 2 or (len(words) == 2 and words[1] != READ_ONLY_MARK):
            raise ValueError(f"{source} line {number}: expected 'TOKEN' or 'TOKEN read-only'")
        tokens.append(Token(words[0], read_only=len(words) == 2))
    if not tokens:
        raise ValueError(f"{source} holds no token")
    return tokens


def read_tokens(path: str | Path) -> list[Token]:
    """The tokens in the file `path` (see the module's docstring for the format)."""
    return parse_tokens(Path(path).read_text(), f"token file {path}")


class TokenCheck(grpc.ServerInterceptor):
    """Refuses calls without a known token (UNAUTHENTICATED) and writes by a read-only token
    (PERMISSION_DENIED). Health checks pass untouched."""

    def __init__(self, tokens: Iterable[Token]) -> None:
        self._tokens = [(f"Bearer {token.secret}".encode(), token.read_only) for token in tokens]

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        sent = str(dict(details.invocation_metadata).get("authorization", "")).encode()
        read_only = self._match(sent)
        if read_only is None:
            return refusal(handler, details.method, grpc.StatusCode.UNAUTHENTICATED,
                           "Unauthenticated", "missing or wrong token: send metadata "
                           "'authorization: Bearer <token>' with one of the server's tokens")
        method = details.method.rsplit("/", 1)[-1]
        if read_only and not _reads(details.method):
            return refusal(handler, details.method, grpc.StatusCode.PERMISSION_DENIED,
                           "PermissionDenied",
                           f"this token is read-only and cannot call {method}")
        return handler

    def _match(self, sent: bytes) -> bool | None:
        """The matching token's read-only flag, or None when no token matches. Every token is
        compared in constant time, so timing tells nothing about which one nearly matched."""
        found = None
        for expected, read_only in self._tokens:
            if hmac.compare_digest(sent, expected) and found is None:
                found = read_only
        return found


def _reads(method_path: str) -> bool:
    """Whether the method at `method_path` changes nothing: one of paramstore's reads, or
    server reflection (it reveals the schema, not data)."""
    return method_path in _READ_PATHS or method_path.startswith(reflection.METHOD_PREFIXES)


def refusal(handler: grpc.RpcMethodHandler, method: str, code: grpc.StatusCode, kind: str,
            message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers `code` with `message`."""
    started = time.perf_counter()

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        _log.debug("store=- method=%s status=%s duration_ms=%.1f", method.rsplit("/", 1)[-1],
                  code.name, (time.perf_counter() - started) * 1000)
        context.set_trailing_metadata(((ERROR_KEY, kind),))
        context.abort(code, message)

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


def caller_naming(tokens: Iterable[Token]) -> Callable[[dict[str, Any], str], str]:
    """A function naming the caller of a call from its metadata and peer, for per-caller
    bounds: its token when it sends a known one, else its peer's address without the port
    (a client cannot make itself many callers by opening many connections)."""
    names = {f"Bearer {token.secret}": f"token #{number}"
             for number, token in enumerate(tokens, start=1)}

    def caller_of(metadata: dict[str, Any], peer: str) -> str:
        sent = metadata.get("authorization")
        name = names.get(sent) if isinstance(sent, str) else None
        return name or f"peer {peer_host(peer)}"

    return caller_of


def peer_host(peer: str) -> str:
    """`ipv4:10.0.0.7:5123` -> `ipv4:10.0.0.7`; `ipv6:[::1]:5123` -> `ipv6:[::1]`; others as
    they are (`unix:/path`)."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer
