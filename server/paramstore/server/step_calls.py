"""The open `PushPullSteps` calls, so that a server stopping ends the idle ones at once.

A worker keeps one call open across its steps and computes between them. A graceful stop that
waited for such a call would wait out its whole grace period, and one whose worker went away
without closing it, longer. So each call waits for its next step's first message on a thread
of its own while its handler waits for that message or for the stop: the stop ends the call
with `ShuttingDown` (UNAVAILABLE), and the worker sends its step again to the server that comes
next. A step already begun is read and answered by its handler, within the grace, as the data
channel finishes a busy connection's step.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from paramstore.server.errors import ShuttingDown

_FETCH, _FINISH = "fetch", "finish"


class _Stop:
    """Put in a waiting call's answers: the server is stopping."""


class _NextStep:
    """One call's waits for its next step: `next()` returns the step's first message, None at
    the end of the requests, or raises what reading raised, or `ShuttingDown`."""

    def __init__(self, requests: Iterator[Any], calls: StepCalls) -> None:
        self._requests = requests
        self._calls = calls
        self._orders: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None

    def next(self) -> Any:
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="paramstore-next-step",
                                            daemon=True)
            self._reader.start()
        if not self._calls.wait(self):
            raise _shutting_down()
        try:
            self._orders.put(_FETCH)
            answer = self._answers.get()
        finally:
            self._calls.done(self)
        if isinstance(answer, _Stop):
            raise _shutting_down()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def stop(self) -> None:
        self._answers.put(_Stop())

    def finish(self) -> None:
        self._orders.put(_FINISH)  # a reader still reading leaves once its call has ended

    def _read(self) -> None:
        while self._orders.get() == _FETCH:
            try:
                self._answers.put(next(self._requests, None))
            except BaseException as error:  # noqa: B902 - the handler's to raise
                self._answers.put(error)


def _shutting_down() -> ShuttingDown:
    return ShuttingDown("the server is shutting down: send the step again, to the server that "
                        "comes next")


class StepCalls:
    """Every open `PushPullSteps` call of a server; `close()` ends those waiting for a step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[_NextStep] = set()
        self._closed = False

    @contextlib.contextmanager
    def open(self, requests: Iterator[Any]) -> Iterator[Callable[[], Any]]:
        """For one call reading `requests`: a function returning its next step's first
        message (None at the end), which raises `ShuttingDown` once the server stops."""
        next_step = _NextStep(requests, self)
        try:
            yield next_step.next
        finally:
            next_step.finish()

    def close(self) -> int:
        """End the calls waiting for a step now, and the others when their step is done.
        Returns how many were waiting."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
        for next_step in waiting:
            next_step.stop()
        return len(waiting)

    def wait(self, next_step: _NextStep) -> bool:
        """Count `next_step` as waiting; False when the server stops already."""
        with self._lock:
            if not self._closed:
                self._waiting.add(next_step)
            return not self._closed

    def done(self, next_step: _NextStep) -> None:
        with self._lock:
            self._waiting.discard(next_step)
