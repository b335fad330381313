"""`StepStream`: a training worker's PushPull steps on one long-lived `PushPullSteps` call.

A call per step costs its set-up every step (a stream, a thread on each side, the admission
and token checks): on loopback a few milliseconds, as much as moving the step's data through
shared memory. One call carries the steps one after another instead. The server cancels a
call that waits on its client longer than its idle timeout, as this one does while the worker
computes, so a call idle for half that long is closed and the next step opens a new one; so
is a call whose step failed.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

Result = TypeVar("Result")


class StepStream:
    """The `PushPullSteps` call of one worker (`client` is its `Client`)."""

    def __init__(self, client: Any, idle_timeout: float) -> None:
        self._client = client
        # A server too old to say leaves the default idle timeout (30 s) in force.
        self._idle_limit = (idle_timeout or 30.0) / 2
        self._outbox: queue.SimpleQueue[Iterable[Any] | None] | None = None
        self._replies: Iterator[Any] | None = None
        self._ended = self._opened = 0.0

    def exchange(self, requests: Callable[[bool], Iterable[Any]],
                 read: Callable[[Iterator[Any]], Result]) -> Result:
        """Send one step's `requests(continuing)` and return `read(replies)`, which must read
        exactly that step's replies; `continuing` says whether the step goes on the call that
        carried the previous one (else on a new call). Raises what `read` raises (the call is
        closed then)."""
        now = time.monotonic()
        continuing = not (self._outbox is None or self._replies is None or
                          now - self._ended > self._idle_limit or self._late(now))
        if not continuing:
            self._outbox, self._replies = self._open(now)
        assert self._outbox is not None and self._replies is not None
        self._outbox.put(requests(continuing))
        try:
            result = read(self._replies)
        except BaseException:
            self.close()  # the call failed, or is out of step with its replies
            raise
        self._ended = time.monotonic()
        return result

    def close(self) -> None:
        """End the call (closing twice is harmless)."""
        if self._outbox is not None:
            self._outbox.put(None)  # the server's handler sees the end of the requests
        if self._replies is not None:
            getattr(self._replies, "close", lambda: None)()
        self._outbox = self._replies = None

    def _late(self, now: float) -> bool:
        # A client with a deadline per call must not let this call reach it.
        return bool(self._client.timeout) and now - self._opened > self._client.timeout / 2

    def _open(self, now: float) -> tuple[queue.SimpleQueue[Iterable[Any] | None], Iterator[Any]]:
        """A new call (the old one closed): where to put each step's requests, and the
        replies."""
        self.close()
        outbox: queue.SimpleQueue[Iterable[Any] | None] = queue.SimpleQueue()

        def requests() -> Iterator[Any]:
            while (step := outbox.get()) is not None:
                yield from step

        self._opened = now
        return outbox, iter(self._client.stream("PushPullSteps", requests()))
