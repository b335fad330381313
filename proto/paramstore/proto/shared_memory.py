"""The same-host data path of PushPull, for the server and the SDK: shared-memory segments.

A training worker on the server's host creates a POSIX shared-memory segment and names it in
`PushBegin.shared_memory`; the parameters' bytes lie in it instead of in chunks, and the server
writes the new values back over them. On loopback this removes the socket copies and the HTTP/2
framing of every byte (about a millisecond of CPU per MiB on each side), so a step costs two
memory copies. Whether the server sees the worker's segments is asked once, at JoinTraining,
with a probe segment of random bytes that the server reads back.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import stat
from multiprocessing import shared_memory

NAME = re.compile(r"paramstore-[0-9a-f]{32}\Z")
PROBE_BYTES = 16
ALIGN = 64  # each parameter's region starts on a cache line
_DIRECTORY = "/dev/shm"  # where Linux keeps POSIX shared memory


def region_bytes(nbytes: int) -> int:
    """The bytes a parameter of `nbytes` raw bytes takes in a segment."""
    return -(-nbytes // ALIGN) * ALIGN


def new_name() -> str:
    return f"paramstore-{secrets.token_hex(16)}"


def create(size: int) -> shared_memory.SharedMemory:
    """A new segment of at least `size` bytes, with an unguessable name (the creator unlinks it)."""
    return shared_memory.SharedMemory(name=new_name(), create=True, size=max(size, 1))


def open_mapped(name: str) -> mmap.mmap:
    """Map the segment `name` that a worker created. Raises `ValueError` for a name that is not
    a segment name, `OSError` when it cannot be opened (another host, or gone)."""
    if not NAME.match(name):
        raise ValueError(f"{name!r} is not a shared-memory segment name ('paramstore-' and 32 "
                         "hex digits)")
    descriptor = os.open(os.path.join(_DIRECTORY, name), os.O_RDWR | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{name!r} is not a shared-memory segment")
        return mmap.mmap(descriptor, 0)
    finally:
        os.close(descriptor)


def exists(name: str) -> bool:
    """Whether the segment `name` is still there (its worker has not unlinked it)."""
    return os.path.exists(os.path.join(_DIRECTORY, name))


def read_probe(name: str) -> bytes:
    """The first `PROBE_BYTES` of segment `name`, or b"" when it cannot be read here."""
    try:
        mapped = open_mapped(name)
    except (OSError, ValueError):
        return b""
    with mapped:
        return bytes(mapped[:PROBE_BYTES])
