"""Facts of the wire contract that the server and the SDK must agree on, written once.

- `ERROR_KEY`: the trailing-metadata key naming the server's error kind (`StoreNotFound`, ...),
  which the SDK maps to its exception classes;
- `READ_METHODS`: the calls that change nothing. A read-only token may make them, and the SDK
  retries them on UNAVAILABLE; no other call is ever retried behind a caller's back;
- `PUSH_METHODS`, `PULL_METHODS`: the methods whose messages carry tensor chunks
  (`paramstore.proto.chunks`): pushes are client streams of `PushRequest`, pulls answer with
  a stream of `PullResponse`.
"""

from __future__ import annotations

SERVICE = "paramstore.v1.ParamStore"
ERROR_KEY = "paramstore-error"
READ_METHODS = frozenset({
    "GetStore", "ListStores", "CollectParams", "Pull", "ListTies", "ListSnapshots",
    "ExportSnapshot", "GetOptimizerStates",
})
PUSH_METHODS = ("Push", "SetData", "InitKeys", "PushPull")  # requests: PushRequest chunks
PULL_METHODS = ("Pull", "PushPull")  # replies: PullResponse chunks


def path(method: str) -> str:
    """The method's full gRPC path, `/paramstore.v1.ParamStore/<method>`."""
    return f"/{SERVICE}/{method}"
