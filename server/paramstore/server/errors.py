"""The domain's errors: what went wrong, in words a caller can act on, with no wire concepts.

Each class names one kind of failure; the servicer maps each kind to one gRPC status, in one
place (`servicer.STATUS_OF`), and sends the class name as `paramstore-error` trailing metadata.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class: a request the stores refused. The message names the offending value."""


class InvalidArgument(StoreError):
    """The request itself is malformed: a bad name, regex, shape, dtype, size or file."""


class StoreNotFound(StoreError):
    """No store has this name."""


class ParameterNotFound(StoreError):
    """The store has no parameter of this name."""


class SnapshotNotFound(StoreError):
    """The store has no snapshot with this id."""


class AlreadyExists(StoreError):
    """A store of this name exists already."""


class FailedPrecondition(StoreError):
    """A valid request that the store's current state refuses (a shape mismatch, ...)."""


class ResourceExhausted(StoreError):
    """A size limit would be exceeded."""


class StorageUnavailable(StoreError):
    """The storage failed (an I/O error, an unreachable backend): nothing was committed, and
    the same request may succeed later."""


class NotOwner(FailedPrecondition):
    """Another replica owns the store (`owner` is its address): ask it."""

    def __init__(self, message: str, owner: str) -> None:
        super().__init__(message)
        self.owner = owner

    def __copy__(self) -> NotOwner:
        return NotOwner(str(self), self.owner)


class NotTraining(FailedPrecondition):
    """The store has no training session (none began, it ended, or the store moved to this
    replica from its last snapshot): a worker joins again."""


class ShuttingDown(StoreError):
    """The server is stopping: the same request goes to the server that comes next."""


class StoreChanged(StoreError):
    """The store was written since the version a reader listed: it lists it again."""
