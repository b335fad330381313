"""Facts of the wire contract that the server and the SDK must agree on, written once.

- `ERROR_KEY`: the trailing-metadata key naming the server's error kind (`StoreNotFound`, ...),
  which the SDK maps to its exception classes;
- `OWNER_KEY`: with a FAILED_PRECONDITION of kind `NotOwner`, the trailing-metadata key giving
  the address of the replica that owns the store, where the SDK sends the call again;
- `REQUEST_ID_KEY`: the metadata key of a mutating call's request id, the same in every retry
  of one call, so that a replica applies it at most once;
- `READ_METHODS`: the calls that change nothing. A read-only token may make them, and the SDK
  retries them on UNAVAILABLE; no other call is ever retried behind a caller's back;
- `PUSH_METHODS`, `PULL_METHODS`: the methods whose messages carry tensor chunks
  (`paramstore.proto.chunks`): pushes are client streams of `PushRequest`, pulls answer with
  a stream of `PullResponse`;
- `SESSION_METHODS`: calls that carry request after request for as long as they live (a
  worker's training steps): the SDK never keeps their messages to send them again;
- `read_pull`: the one reader of a pull stream, with its completeness checks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

from paramstore.dtypes import numpy_dtype

SERVICE = "paramstore.v1.ParamStore"
ERROR_KEY = "paramstore-error"
OWNER_KEY = "paramstore-owner"
REQUEST_ID_KEY = "paramstore-request-id"
READ_METHODS = frozenset({
    "GetStore", "ListStores", "CollectParams", "Pull", "ListTies", "ListSnapshots",
    "ExportSnapshot", "GetOptimizerStates", "GetRetention",
    "DiffSnapshots", "ListReplicas", "OpenDataRead",
})
# requests: PushRequest chunks
PUSH_METHODS = ("Push", "SetData", "InitKeys", "PushPull", "PushPullSteps")
PULL_METHODS = ("Pull", "PushPull", "PushPullSteps")  # replies: PullResponse chunks
SESSION_METHODS = frozenset({"PushPullSteps"})


def path(method: str) -> str:
    """The method's full gRPC path, `/paramstore.v1.ParamStore/<method>`."""
    return f"/{SERVICE}/{method}"


class StreamError(ValueError):
    """A pull stream that breaks the contract (order of messages, byte counts)."""


def read_pull(replies: Iterable[Any],
              start: Callable[[Any, memoryview | None], Callable[[Any], None] | None],
              on_begin: Callable[[Any], Callable[[int], None] | None] | None = None,
              count: int | None = None) -> Any:
    """Read a pull stream (`Pull`, `PushPull`): PullBegin, then each ParameterSpec followed,
    when `has_data`, by exactly its bytes in chunks, or runs of parameters whole in
    ParameterBatch messages. The one reader of that stream.

    `start(spec, whole)` is called for each parameter: `whole` is a view of all its bytes when
    they came with the spec in a batch (valid while the caller keeps it), else None. It returns
    where the chunks that follow go (a function of one chunk), or None to drop them.
    `on_begin(begin)` may return a function told every chunk's size (a progress bar). With
    `count` (one step of `PushPullSteps`) reading stops after the last byte of that many
    parameters, leaving the rest of `replies` unread. Returns the PullBegin. Raises
    `StreamError` for a stream out of order, a parameter given more or fewer bytes than its
    shape and dtype hold, or a stream that ends half-way."""
    replies = iter(replies)
    first = next(replies, None)
    if first is None or first.WhichOneof("item") != "begin":
        raise StreamError("the server's pull stream did not start with PullBegin")
    progress = on_begin(first.begin) if on_begin is not None else None
    name, write, expected, filled, seen = "", None, 0, 0, 0
    if count == 0:
        return first.begin
    for reply in replies:
        kind = reply.WhichOneof("item")
        if kind == "parameter":
            _check_filled(name, expected, filled)
            spec = reply.parameter
            name, write, filled = spec.name, start(spec, None), 0
            expected = data_bytes(spec) if spec.has_data else 0
            seen += 1
        elif kind == "chunk":
            filled += len(reply.chunk)
            if not name or filled > expected:
                raise StreamError(f"the server sent more bytes than {name or 'a parameter'!r} "
                                  f"holds ({expected})")
            if write is not None:
                write(reply.chunk)
            if progress is not None:
                progress(len(reply.chunk))
        elif kind == "batch":
            _check_filled(name, expected, filled)
            name, write, expected, filled = "", None, 0, 0
            seen = _read_batch(reply.batch, start, progress, seen, count)
        else:
            raise StreamError("the server's pull stream holds a second PullBegin")
        if seen == count and filled == expected:
            return first.begin
    _check_filled(name, expected, filled)
    if count is not None:
        raise StreamError(f"the server's step answered {seen} of its {count} parameters")
    return first.begin


def _read_batch(batch: Any, start: Callable[[Any, memoryview | None], Any],
                progress: Callable[[int], None] | None, seen: int, count: int | None) -> int:
    """Give `start` each parameter of a batch with a view of its bytes, up to the `count`-th
    parameter of the stream; return how many the stream has seen."""
    data = memoryview(batch.data)
    if progress is not None:
        progress(len(data))
    offset = 0
    for spec in batch.parameters:
        if spec.has_data:
            end = offset + data_bytes(spec)
            if end > len(data):
                raise StreamError(f"the server sent {len(data) - offset} of the "
                                  f"{end - offset} bytes of {spec.name!r}")
            start(spec, data[offset:end])
            offset = end
        else:
            start(spec, None)
        seen += 1
        if seen == count:
            return seen
    if offset != len(data):
        raise StreamError(f"the server sent {len(data) - offset} bytes more than the "
                          f"parameters of its batch hold")
    return seen


def data_bytes(spec: Any) -> int:
    """Bytes of data a ParameterSpec's shape and dtype hold."""
    return _itemsize(spec.dtype) * math.prod(spec.shape)


@functools.lru_cache(maxsize=64)  # bounded: names come from the wire
def _itemsize(dtype: str) -> int:
    return int(numpy_dtype(dtype).itemsize)


def _check_filled(name: str, expected: int, filled: int) -> None:
    if filled != expected:
        raise StreamError(f"the server sent {filled} of the {expected} bytes of {name!r}")
