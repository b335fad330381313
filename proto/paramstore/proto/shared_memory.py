"""The same-host data path of PushPull, for the server and the SDK: shared-memory segments.

A training worker on the server's host creates a segment and names it in `PushBegin.
shared_memory`; the parameters' bytes lie in it instead of in chunks, and the server writes the
new values back over them. On loopback this removes the socket copies and the HTTP/2
framing of every byte (about a millisecond of CPU per MiB on each side), so a step costs two
memory copies. Whether the server sees the worker's segments is asked once, at JoinTraining,
with a probe segment of random bytes that the server reads back.

A segment is a memfd sealed against shrinking and growing: a file that could shrink under the
server's mapping would kill the server with SIGBUS when it touched the missing pages. The name
says where the server finds it, `paramstore-<32 hex digits>@<pid>/<descriptor>`: it opens
`/proc/<pid>/fd/<descriptor>` and maps it only when that is the worker's memfd of that name,
sealed. A server in another pid namespace, or without the right to open another user's
descriptors, cannot open it: the probe tells the worker to use the socket.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import re
import secrets
import weakref

NAME = re.compile(r"(?P<memfd>paramstore-[0-9a-f]{32})@(?P<pid>[1-9][0-9]{0,9})"
                  r"/(?P<descriptor>0|[1-9][0-9]{0,9})\Z")
PROBE_BYTES = 16
ALIGN = 64  # each parameter's region starts on a cache line
# What the server requires of a segment: it can never shrink, and nothing can undo that. (Only
# Linux has memfds and seals; elsewhere no segment can be made or opened.)
SEALS = getattr(fcntl, "F_SEAL_SHRINK", 0) | getattr(fcntl, "F_SEAL_SEAL", 0)


def region_bytes(nbytes: int) -> int:
    """The bytes a parameter of `nbytes` raw bytes takes in a segment."""
    return -(-nbytes // ALIGN) * ALIGN


def segment_name(memfd: str, pid: int, descriptor: int) -> str:
    """The name of the memfd `memfd` that process `pid` holds open as `descriptor`."""
    return f"{memfd}@{pid}/{descriptor}"


class Segment:
    """A worker's segment of `size` bytes: a new memfd with an unguessable name, sealed at that
    size, and its mapping here (`mapped`). Its descriptor stays open, for the server to find it
    by `name`, until `close()` or until the segment is garbage-collected; the mapping lives as
    long as arrays view it."""

    def __init__(self, size: int) -> None:
        memfd = f"paramstore-{secrets.token_hex(16)}"
        descriptor = os.memfd_create(memfd, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(descriptor, size)
            fcntl.fcntl(descriptor, fcntl.F_ADD_SEALS, SEALS | fcntl.F_SEAL_GROW)
            self.mapped = mmap.mmap(descriptor, size)
        except BaseException:
            os.close(descriptor)
            raise
        self.name = segment_name(memfd, os.getpid(), descriptor)
        self.size = size
        self._close = weakref.finalize(self, os.close, descriptor)

    def close(self) -> None:
        """Close the descriptor: the server can no longer find the segment (closing twice is
        harmless)."""
        self._close()


def create(size: int) -> Segment:
    """A new segment of at least `size` bytes (a mapping has at least one). Raises `OSError`
    where there are no memfds (other systems than Linux)."""
    if not SEALS:
        raise OSError("shared-memory segments are sealed memfds, which only Linux has")
    return Segment(max(size, 1))


def open_mapped(name: str) -> mmap.mmap:
    """Map the segment `name` that a worker created. Raises `ValueError` for a name that is not
    a segment name or that names anything but the worker's sealed memfd of ordinary pages, and
    `OSError` when it cannot be opened (another host or pid namespace, no permission, gone)."""
    descriptor = _open_verified(name)
    try:
        size = os.fstat(descriptor).st_size
        if size == 0:
            raise ValueError(f"{_path(name)} holds no bytes")
        return mmap.mmap(descriptor, size)
    finally:
        os.close(descriptor)


def exists(name: str) -> bool:
    """Whether the worker still holds the segment `name` open (it did not close it or exit)."""
    try:
        return _is_the_segment(_path(name), name)
    except OSError:
        return False


def read_probe(name: str) -> bytes:
    """The first `PROBE_BYTES` of segment `name`, or b"" when it cannot be read here."""
    try:
        descriptor = _open_verified(name)
    except (OSError, ValueError):
        return b""
    try:
        return os.pread(descriptor, PROBE_BYTES, 0)
    finally:
        os.close(descriptor)


def _path(name: str) -> str:
    match = NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a shared-memory segment name ('paramstore-' and 32 "
                         "hex digits, '@', the worker's pid, '/', its descriptor)")
    return f"/proc/{match['pid']}/fd/{match['descriptor']}"


def _is_the_segment(link: str, name: str) -> bool:
    """Whether the symbolic link `link` (of /proc) leads to the memfd `name` names."""
    return os.readlink(link) == f"/memfd:{name.partition('@')[0]} (deleted)"


def _open_verified(name: str) -> int:
    """A descriptor of the segment `name`, opened through /proc and checked: the worker's memfd
    of that name, sealed against shrinking, of ordinary pages."""
    path = _path(name)
    # Checked before opening too, so that no device or FIFO a worker names is ever opened
    # (opening has effects of its own); the check that counts is on what was opened.
    if not _is_the_segment(path, name):
        raise ValueError(f"{path} is {os.readlink(path)!r}, not the memfd {name!r} names")
    descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        opened = f"/proc/self/fd/{descriptor}"
        if not _is_the_segment(opened, name):
            raise ValueError(f"{path} became {os.readlink(opened)!r}, not the memfd {name!r} "
                             "names")
        if fcntl.fcntl(descriptor, fcntl.F_GET_SEALS) & SEALS != SEALS:
            raise ValueError(f"{path} is not sealed (F_SEAL_SHRINK and F_SEAL_SEAL): a segment "
                             "that could shrink under the server's mapping is refused")
        # Missing huge pages fault with SIGBUS even in a sealed file (after a hole punched in
        # it); shared memory's ordinary pages do not.
        if os.fstatvfs(descriptor).f_bsize != mmap.PAGESIZE:
            raise ValueError(f"{path} is a memfd of huge pages, refused: a segment has pages "
                             "of the ordinary size")
        return descriptor
    except BaseException:
        os.close(descriptor)
        raise
