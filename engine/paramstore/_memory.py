"""Keep freed memory in the process for reuse, as MXNet's pooled storage manager does.

A training step allocates and frees the same large arrays every step (im2col columns,
activations, their gradients). glibc's malloc hands large blocks back to the OS (`mmap` for
blocks over its threshold, trimming the top of the heap past another), so every step
page-faults them in again: on LeNet, about 2,800 faults a step and half of its time. Raising
both thresholds keeps the blocks in the heap. The server and the SDK do the same for the
tensors and chunks of every push and pull. `PARAMSTORE_MALLOC_POOL=0` leaves malloc alone.

The server also has NumPy stop advising transparent huge pages for its large arrays: a fresh
huge page is zeroed and faulted in whole, and on a virtual machine that costs about four times
the small pages' faults (a 256 MiB push into fresh memory: 2.4 ms of system CPU per MiB with huge
pages, 0.6 with small ones). Memory that is reused faults nothing either way; but glibc maps
each block over 32 MiB on its own and unmaps it when freed, so every push of such a tensor
faults its memory in, and there huge pages recycled from the last push cost less (0.2-0.35 ms
of system CPU per MiB against 0.6-0.75). `NUMPY_MADVISE_HUGEPAGE`, when set, keeps NumPy's own
choice.

And the server's threads share one malloc arena. glibc gives each thread an arena of its own,
and a block returns to the arena it came from: the tensors a push replaces were freed in the
arena of the thread that received them, and the next push, served by whichever thread of the
pool is free, found them only when it ran on that same thread. Shared, every push reuses them
(256 MiB pushes, two servers alternated in one run: 0.50-0.53 ms of server CPU per MiB against
0.59-0.70 with an arena per thread; pulls alike).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 << 20

_applied = False


def keep_freed_memory() -> None:
    """Once per process, on Linux with glibc: keep freed blocks up to 32 MiB, and up to
    256 MiB of free heap, for the next allocations instead of returning them to the OS."""
    global _applied
    if _applied:
        return
    _applied = True
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def share_one_arena() -> None:
    """On Linux with glibc: every thread started from now on allocates from the arenas that
    exist (call it before starting threads: then the one arena), so a block freed by one
    thread is reused by any other."""
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, 1)


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's `mallopt`, or None where there is none or `PARAMSTORE_MALLOC_POOL=0`."""
    if not sys.platform.startswith("linux") or os.environ.get("PARAMSTORE_MALLOC_POOL") == "0":
        return None
    return getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own C library


def avoid_huge_pages() -> None:
    """Have NumPy allocate large arrays without advising transparent huge pages, unless the
    environment's `NUMPY_MADVISE_HUGEPAGE` chose already."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:  # the setter NumPy's own import calls with that variable's value
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # NumPy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    multiarray._set_madvise_hugepage(False)
