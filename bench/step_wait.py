"""What waiting for a training step's first message through `StepCalls` costs a PushPullSteps
call: the wait runs on a thread of its own so that a stopping server can end an idle call, and
each step pays a hand-over to that thread and back. The baseline, in the same run, reads the
same messages straight from the iterator; both take them from a queue fed by another thread,
as gRPC's request iterator does. Prints microseconds per step and the ratio.

    python bench/step_wait.py [--steps 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from paramstore.server.step_calls import StepCalls


def _fed() -> tuple[queue.SimpleQueue[int | None], Iterator[int]]:
    inbox: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def messages() -> Iterator[int]:
        while (message := inbox.get()) is not None:
            yield message

    return inbox, messages()


def _timed(steps: int,
           wait_with: Callable[[Iterator[int]], AbstractContextManager[Callable[[], int]]],
           ) -> float:
    """Seconds per step: a feeder thread sends each step's message once the last was taken."""
    inbox, messages = _fed()
    taken = threading.Semaphore(0)

    def feed() -> None:
        for step in range(steps):
            inbox.put(step)
            taken.acquire()
        inbox.put(None)

    feeder = threading.Thread(target=feed)
    with wait_with(messages) as next_step:
        started = time.perf_counter()
        feeder.start()
        for _ in range(steps):
            next_step()
            taken.release()
        elapsed = time.perf_counter() - started
    feeder.join()
    return elapsed / steps


def _direct(messages: Iterator[int]) -> AbstractContextManager[Callable[[], int]]:
    return contextlib.nullcontext(lambda: next(messages))


def _through_step_calls(messages: Iterator[int]) -> AbstractContextManager[Callable[[], int]]:
    return StepCalls().open(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = [(_timed(args.steps, _direct), _timed(args.steps, _through_step_calls))
              for _ in range(args.rounds)]
    direct = statistics.median(direct for direct, _ in rounds)
    through = statistics.median(through for _, through in rounds)
    print(f"next step's first message, median of {args.rounds} rounds of {args.steps} steps:")
    print(f"  from the iterator (baseline)  {direct * 1e6:7.1f} us/step")
    print(f"  through StepCalls             {through * 1e6:7.1f} us/step  "
          f"({through / direct:.2f}x, +{(through - direct) * 1e6:.1f} us)")


if __name__ == "__main__":
    main()
