"""What a hostile worker may name as its shared-memory segment instead of a sealed memfd of its
own: `hostile_segment` gives each (in this process, named with its pid) with words of the
refusal it must get."""

from __future__ import annotations

import fcntl
import os
import resource
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from paramstore.proto import shared_memory as segments

TOKEN = "0123456789abcdef" * 2  # the hex digits of the names below
MEMFD = f"paramstore-{TOKEN}"
SEALED = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
NOT_THE_MEMFD = "not the memfd"
NOT_SEALED = "not sealed"
CANNOT_OPEN = "cannot open shared-memory segment"


def named(descriptor: int, pid: int | None = None) -> str:
    """The segment name of `descriptor` of process `pid` (this one), with the name `MEMFD`."""
    return segments.segment_name(MEMFD, os.getpid() if pid is None else pid, descriptor)


def memfd(stack: ExitStack, seals: int, name: str = MEMFD, size: int = 4096,
          flags: int = os.MFD_ALLOW_SEALING) -> int:
    """A memfd of `name` and `size` bytes with `seals`, closed with `stack`."""
    descriptor = os.memfd_create(name, os.MFD_CLOEXEC | flags)
    stack.callback(os.close, descriptor)
    os.ftruncate(descriptor, size)
    if seals:
        fcntl.fcntl(descriptor, fcntl.F_ADD_SEALS, seals)
    return descriptor


def _regular_file(stack: ExitStack, folder: Path) -> int:
    descriptor = os.open(folder / MEMFD, os.O_CREAT | os.O_RDWR)
    stack.callback(os.close, descriptor)
    os.ftruncate(descriptor, 4096)
    return descriptor


def _posix_shared_memory(stack: ExitStack, folder: Path) -> int:
    path = f"/dev/shm/paramstore-{secrets.token_hex(16)}"  # a segment as workers once made them
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    stack.callback(os.close, descriptor)
    stack.callback(os.unlink, path)
    os.ftruncate(descriptor, 4096)
    return descriptor


def _pipe(stack: ExitStack, folder: Path) -> int:
    reading, writing = os.pipe()
    stack.callback(os.close, reading)
    stack.callback(os.close, writing)
    return reading


def _never_open() -> int:
    # No process may hold a descriptor as high as the hard limit of open files.
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _no_such_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as pid_max:
        return int(pid_max.read())  # pids stay below it


Make = Callable[[ExitStack, Path], str]
HOSTILE: dict[str, tuple[Make, str]] = {
    "regular file": (lambda stack, folder: named(_regular_file(stack, folder)), NOT_THE_MEMFD),
    "/dev/shm file": (lambda stack, folder: named(_posix_shared_memory(stack, folder)),
                      NOT_THE_MEMFD),
    "pipe": (lambda stack, folder: named(_pipe(stack, folder)), NOT_THE_MEMFD),
    "memfd of another name": (lambda stack, folder: named(
        memfd(stack, SEALED, name=f"paramstore-{'f' * 32}")), NOT_THE_MEMFD),
    "memfd without seals": (lambda stack, folder: named(memfd(stack, 0)), NOT_SEALED),
    "memfd that cannot be sealed": (lambda stack, folder: named(memfd(stack, 0, flags=0)),
                                    NOT_SEALED),
    "memfd that may still shrink": (lambda stack, folder: named(
        memfd(stack, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)), NOT_SEALED),
    "memfd whose seals may change": (lambda stack, folder: named(
        memfd(stack, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)), NOT_SEALED),
    "memfd of huge pages": (lambda stack, folder: named(
        memfd(stack, SEALED, size=2 << 20, flags=os.MFD_ALLOW_SEALING | os.MFD_HUGETLB)),
        "huge pages"),
    "empty memfd": (lambda stack, folder: named(memfd(stack, SEALED, size=0)), "no bytes"),
    "descriptor that does not exist": (lambda stack, folder: named(_never_open()),
                                       CANNOT_OPEN),
    "pid that does not exist": (lambda stack, folder: named(3, pid=_no_such_pid()),
                                CANNOT_OPEN),
}


@pytest.fixture(params=list(HOSTILE))
def hostile_segment(request: pytest.FixtureRequest, tmp_path: Path
                    ) -> Iterator[tuple[str, str]]:
    """A name of something else than a worker's sealed memfd, and words of its refusal."""
    make, refusal = HOSTILE[request.param]
    with ExitStack() as stack:
        yield make(stack, tmp_path), refusal
