"""Calls to a cluster of replicas: each store's calls go to its owner, wherever it moves.

A replica that does not own a store answers FAILED_PRECONDITION with the owner's address in
trailing metadata (`wire.OWNER_KEY`): the call goes there, and so do the store's next calls.
UNAVAILABLE (a replica down, a store between owners) and CANCELLED (a replica shutting down)
send the call to another replica after a pause, until the failover deadline. Each mutating call
carries one request id (`wire.REQUEST_ID_KEY`) through all its attempts, so a replica applies
it at most once.
Measured against forwarding between replicas: a redirect costs one extra round trip on a
store's first call only, forwarding would cost one on every call (`bench/cluster.py`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from paramstore.proto import wire

DEFAULT_FAILOVER_TIMEOUT = 60.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 0.5


def store_of(request: Any) -> str:
    """The store a request message names ('' for none): its `store` or `name` field, or its
    `begin` message's."""
    fields = request.DESCRIPTOR.fields_by_name
    for name in ("store", "name"):
        if name in fields and isinstance(getattr(request, name), str) and getattr(request, name):
            return str(getattr(request, name))
    if "begin" in fields and request.HasField("begin"):
        return store_of(request.begin)
    return ""


class Replayable:
    """A request stream that can be sent again: the messages already taken are kept (with
    `keep=False`, only the first, which names the store; the stream is then sent once)."""

    def __init__(self, messages: Iterator[Any], keep: bool = True) -> None:
        self._source = messages
        self._keep = keep
        self._taken: list[Any] = []
        self._lock = threading.Lock()
        self.first = next(messages, None)
        if self.first is not None:
            self._taken.append(self.first)

    def fresh(self) -> Iterator[Any]:
        """The whole stream from its start."""
        if not self._keep:
            yield from self._taken
            self._taken = []
            yield from self._source
            return
        index = 0
        while True:
            with self._lock:
                if index < len(self._taken):
                    message = self._taken[index]
                else:
                    message = next(self._source, None)
                    if message is None:
                        return
                    self._taken.append(message)
            index += 1
            yield message


class Routes:
    """Where each store's calls go, among `addresses` and the owners they name."""

    def __init__(self, addresses: list[str], failover_timeout: float) -> None:
        self.addresses = addresses
        self.failover_timeout = failover_timeout
        self._owners: dict[str, str] = {}
        self._next = 0

    def address(self, store: str) -> str:
        """The store's known owner, else the next replica in turn."""
        owner = self._owners.get(store)
        if owner is not None:
            return owner
        self._next = (self._next + 1) % len(self.addresses)
        return self.addresses[self._next]

    def attempts(self, store: str, retries: bool = True) -> Iterator[Attempt]:
        """One `Attempt` per try of a call on `store`, until the failover deadline (only one
        without `retries`)."""
        attempt = Attempt(self, store, time.monotonic() + self.failover_timeout, retries)
        while True:
            attempt.address = self.address(store)
            yield attempt
            attempt.tries += 1

    def learn(self, store: str, owner: str) -> None:
        if store:
            self._owners[store] = owner

    def forget(self, store: str, address: str) -> None:
        if self._owners.get(store) == address:
            del self._owners[store]


class Attempt:
    """One try of a call: where it goes; `retry(error)` says whether to try again."""

    def __init__(self, routes: Routes, store: str, deadline: float, retries: bool) -> None:
        self.routes, self.store, self.deadline = routes, store, deadline
        self.retries = retries
        self.address = ""
        self.tries = 0
        self._redirects = 0

    def retry(self, error: grpc.RpcError) -> bool:
        """Whether the failed try `error` is worth another (after the pause it needs)."""
        if not isinstance(error, grpc.Call):
            return False
        code = error.code()
        owner = dict(error.trailing_metadata() or ()).get(wire.OWNER_KEY)
        if not self.retries:
            if code == grpc.StatusCode.FAILED_PRECONDITION and owner:
                self.routes.learn(self.store, owner)  # the store's next calls go there
            return False
        if code == grpc.StatusCode.FAILED_PRECONDITION and owner and (
                self.tries < 20 or time.monotonic() < self.deadline):
            self.routes.learn(self.store, owner)
            self._redirects += 1
            if self._redirects > 2:  # owners pointing at each other mid-move: let it settle
                self._pause()
            return True
        # A replica shutting down cancels what it cannot finish: as retryable as its absence.
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) \
                and time.monotonic() < self.deadline:
            self.routes.forget(self.store, self.address)
            self._pause()
            return True
        return False

    def _pause(self) -> None:
        pause = min(_LONGEST_PAUSE, _FIRST_PAUSE * 2 ** min(self.tries, 5))
        time.sleep(max(0.0, min(pause, self.deadline - time.monotonic())))


def request_id_metadata(method: str, request_id: str = "") -> tuple[tuple[str, str], ...]:
    """`request_id`, or a fresh one, for a mutating call (reads need none)."""
    if method in wire.READ_METHODS:
        return ()
    return ((wire.REQUEST_ID_KEY, request_id or new_request_id()),)


def new_request_id() -> str:
    return uuid.uuid4().hex
