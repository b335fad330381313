"""Every error the SDK raises: one base class, one subclass per thing that can go wrong.

Each carries the server's message (`str(error)`; when no server was reached, what to check) and
the gRPC status name (`error.code`). No `grpc.RpcError` reaches a caller: `from_rpc_error`
translates them all.
"""

from __future__ import annotations

import re

import grpc

from paramstore.proto.wire import ERROR_KEY, OWNER_KEY


class ParamstoreError(Exception):
    """Base class of the SDK's errors."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgument(ParamstoreError):
    """The request was malformed: a bad name, regex, shape, dtype, size or file."""

    code = "INVALID_ARGUMENT"


class NotFound(ParamstoreError):
    """Something named in the request does not exist."""

    code = "NOT_FOUND"


class StoreNotFound(NotFound):
    """No store has this name."""


class ParameterNotFound(NotFound):
    """The store has no parameter of this name."""


class SnapshotNotFound(NotFound):
    """The store has no snapshot with this id."""


class AlreadyExists(ParamstoreError):
    """A store of this name exists already."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(ParamstoreError):
    """The store's state refuses the request (a shape or dtype mismatch, a stale version...)."""

    code = "FAILED_PRECONDITION"


class NotTraining(FailedPrecondition):
    """The store's training session is gone (it moved to another replica, from its last
    snapshot): a `RemoteKVStore` joins it again by itself."""


class NotOwner(FailedPrecondition):
    """Another replica serves the store. Calls follow such a redirect by themselves; a
    long-lived call that meets one after its first replies (its store moved) fails with it."""


class ResourceExhausted(ParamstoreError):
    """A size limit of the server or of gRPC was exceeded."""

    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(ParamstoreError):
    """The server wants a token (`connect(..., token=...)`) and got none or a wrong one."""

    code = "UNAUTHENTICATED"


class PermissionDenied(ParamstoreError):
    """The token is valid but not allowed to do this."""

    code = "PERMISSION_DENIED"


class Unavailable(ParamstoreError):
    """The server cannot be reached or is shutting down (reads were retried first)."""

    code = "UNAVAILABLE"


class DeadlineExceeded(ParamstoreError):
    """The call did not finish within its timeout."""

    code = "DEADLINE_EXCEEDED"


class Aborted(ParamstoreError):
    """The call was aborted, typically by a conflicting concurrent call."""

    code = "ABORTED"


class Cancelled(ParamstoreError):
    """The call was cancelled."""

    code = "CANCELLED"


class Internal(ParamstoreError):
    """The server failed (a bug or a disk error); its log says more."""

    code = "INTERNAL"


_BY_KIND: dict[str, type[ParamstoreError]] = {
    cls.__name__: cls
    for cls in (StoreNotFound, ParameterNotFound, SnapshotNotFound, AlreadyExists,
                InvalidArgument, FailedPrecondition, NotTraining, ResourceExhausted,
                Unauthenticated)
}
_BY_STATUS: dict[grpc.StatusCode, type[ParamstoreError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def from_rpc_error(error: grpc.RpcError, address: str = "") -> ParamstoreError:
    """The SDK error for a failed call to `address`: the server's error kind, else its status."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
    trailers = dict((error.trailing_metadata() if isinstance(error, grpc.Call) else None) or ())
    if address and code == grpc.StatusCode.UNAVAILABLE and ERROR_KEY not in trailers:
        message = _unreachable(address, message)
    return from_status(code, message, trailers.get(ERROR_KEY, ""), trailers.get(OWNER_KEY, ""))


# gRPC's words for a call that reached no server, and the reason after them.
_NO_CONNECTION = re.compile(r"failed to connect to all addresses; last error: (?:[A-Z_]+: )?"
                            r"(?:ipv[46]:\S+?: )?(?P<reason>.*)|(?P<dns>DNS resolution failed|"
                            r"errors resolving)", re.DOTALL)


def _unreachable(address: str, message: str) -> str:
    """gRPC's message for a server that could not be reached, said so that a person knows
    what to check; any other message as it is."""
    found = _NO_CONNECTION.match(message)
    if found is None:
        return message
    unreachable = f"cannot reach a paramstore server at {address}"
    if found.group("dns"):
        return f"{unreachable}: its host name does not resolve"
    reason = found.group("reason")
    if "refused" in reason:
        return (f"{unreachable}: connection refused; is one running there? "
                f"(`paramstore serve --address {address}` starts one)")
    return (f"{unreachable}: {reason} (a TLS server needs a TLS client, and a plain-text one "
            "a plain-text client)")


def from_status(code: grpc.StatusCode | None, message: str, kind: str = "",
                owner: str = "") -> ParamstoreError:
    """The SDK error for a status `code` with the server's error `kind` and, for a store
    another replica owns, its `owner`."""
    cls = NotOwner if owner else \
        _BY_KIND.get(kind) or _BY_STATUS.get(code, ParamstoreError)  # type: ignore[arg-type]
    return cls(message, code.name if code is not None else None)
