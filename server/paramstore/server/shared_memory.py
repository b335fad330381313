"""Workers' shared-memory segments as the server maps them (see `paramstore.proto.shared_memory`).

A worker reuses one segment step after step, so mappings are kept (the most recent few): mapping
a segment again each step would fault in every page again. A dropped mapping is unmapped once
the last array viewing it is gone; a segment its worker closed lives until then, so those of
workers gone (closed, or exited) are dropped whenever a new segment is mapped or a worker
leaves. A segment is sealed against shrinking before it is mapped, so no worker can take pages
from under a mapping.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict

import numpy as np

from paramstore.proto import shared_memory
from paramstore.server.errors import InvalidArgument

KEPT_MAPPINGS = 64  # segments kept mapped, most recently used first


class Segments:
    """The mapped segments of the training workers, by name."""

    def __init__(self, kept: int = KEPT_MAPPINGS) -> None:
        self._kept = kept
        self._mapped: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> mmap.mmap:
        """The segment `name`, mapped. Raises `InvalidArgument` for a bad name, a name of
        anything but a sealed segment, or a segment that cannot be opened (gone, or created on
        another host)."""
        with self._lock:
            mapped = self._mapped.get(name)
            if mapped is not None:
                self._mapped.move_to_end(name)
                return mapped
        try:
            mapped = shared_memory.open_mapped(name)
        except ValueError as error:
            raise InvalidArgument(f"refused shared-memory segment {name!r}: {error}") from None
        except OSError as error:
            raise InvalidArgument(
                f"cannot open shared-memory segment {name!r} ({error}); a worker on another "
                "host sends its data in chunks"
            ) from None
        self.drop_closed()
        with self._lock:
            self._mapped[name] = mapped
            while len(self._mapped) > self._kept:
                self._mapped.popitem(last=False)  # unmapped when no array views it any more
        return mapped

    def drop_closed(self) -> None:
        """Drop the mappings of segments their workers closed: only this server's mapping
        kept their memory."""
        with self._lock:
            for name in [name for name in self._mapped if not shared_memory.exists(name)]:
                del self._mapped[name]


def region(segment: mmap.mmap, offset: int, nbytes: int, what: str) -> np.ndarray:
    """The `nbytes` bytes at `offset` as a writable uint8 view (no copy). Raises
    `InvalidArgument` when the segment is too small."""
    if offset + nbytes > len(segment):
        raise InvalidArgument(
            f"the shared-memory segment holds {len(segment)} bytes, too few for {what} at "
            f"offset {offset}"
        )
    return np.frombuffer(segment, np.uint8, nbytes, offset)
