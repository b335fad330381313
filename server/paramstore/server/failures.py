"""What a client is told about a failure the server did not expect.

Never Python text or a server path: a full disk is RESOURCE_EXHAUSTED with a message a person
can act on; anything else is INTERNAL with a short error id, which the log shows beside the
traceback so that an operator finds it from the client's report.
"""

from __future__ import annotations

import errno
import logging
import secrets
from typing import NamedTuple

import grpc

_log = logging.getLogger("paramstore.server")

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class Answer(NamedTuple):
    """The status, error kind (for the `paramstore-error` trailer) and message to send."""

    code: grpc.StatusCode
    kind: str
    message: str


def unexpected(method: str, error: BaseException) -> Answer:
    """Log `error`, raised while serving `method`, and say what the client is told."""
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        _log.error("%s failed: the disk is full: %s", method, error)
        return Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, "ResourceExhausted",
                      "the server's disk is full: nothing was written; free space or delete "
                      "snapshots, then retry")
    error_id = secrets.token_hex(4)
    _log.error("%s failed (error id %s)", method, error_id, exc_info=error)
    return Answer(grpc.StatusCode.INTERNAL, "Internal",
                  f"internal server error (error id {error_id}, in the server's log)")
