"""Pulling a store's parameters into local ones in place; a refused pull changes nothing.

A big pull whose names fit in one listing reads its tensors over the server's data channel
when it has one (`data_transfers`: the listed version's bytes received straight into the
destinations); otherwise, and whenever that channel cannot be used, it is read over `Pull`
calls, as follows. A pull is read over several concurrent `Pull` calls when it is big (gRPC's
Python server sends one message of a stream at a time, so parallel streams keep the
connection busy) or when its names would outgrow one gRPC message. The parts must all come
from one store version, else the pull is read again; a part that fails stops the others and
fails the pull.

Each chunk is copied once, straight from the bytes gRPC received into the destination's array,
while the next chunk is still on its way. Before that, when the names fit in one select regex,
a `CollectParams` listing (specs only, cheap) checks every shape and dtype against the local
destinations, so a mismatch is refused before anything is written; when the pull then reads
the very version the listing showed, nothing more is needed. Otherwise (many names, or a write
in between) each destination's previous values are kept aside before its bytes are written,
and restored when a later parameter disagrees or the stream fails. Small parameters come whole
in batches: their bytes stay in the received messages (each no bigger than its previous values
would be) and are written once every part of the pull arrived and agreed, so nothing of theirs
is kept aside or undone. Either way a pull the server refuses (a mismatch, a missing name, a
store that kept changing) leaves the local parameters as they were (another thread reading
them meanwhile may see the pulled values for a moment). A pull of the listed version cut off
mid-stream (the connection lost) may leave some parameters with their new values and the rest
with their old ones (the one being received when it broke, part new and part old): keeping
a copy of every destination for that case would cost a copy of every byte pulled, and pulling
again mends it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramstore.client.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
    ParamstoreError,
)
from paramstore.dtypes import numpy_dtype
from paramstore.proto import wire
from paramstore.proto.v1 import paramstore_pb2 as pb

# Names per Pull request are capped by their total length, far below gRPC's 4 MiB message.
NAME_BYTES_PER_REQUEST = 1 << 20
# A write between the parts of a split pull makes them disagree: read them all again.
ATTEMPTS = 3
# Parallel Pull calls of a big pull, and the bytes that make a part worth its own call.
PARALLEL_CALLS = 2
PART_MIN_BYTES = 16 << 20

OpenStream = Callable[[list[str]], Iterable[pb.PullResponse]]
OpenListing = Callable[[str], Iterable[pb.CollectParamsResponse]]
# The server's bound on a select regex; longer lists of names skip the listing.
MAX_SELECT_LENGTH = 4096
Progress = Callable[[int], AbstractContextManager[Any]]


class Listing(NamedTuple):
    """A `CollectParams` listing of the pulled names: the store version and each name's spec."""

    version: int
    specs: dict[str, pb.ParameterSpec]


# Fills the destinations with the listed version's data some faster way than Pull (the data
# channel, `data_transfers`): True when it did, False when it could not (Pull does it then). Raises
# `Aborted` when the store moved past the listed version, and the errors of a Pull.
ReadListed = Callable[[Any, Listing, Progress], bool]


def batches(names: list[str], budget: int = NAME_BYTES_PER_REQUEST) -> Iterator[list[str]]:
    """`names` cut into consecutive runs whose encoded length stays under `budget` bytes
    (a run always holds at least one name)."""
    batch: list[str] = []
    size = 0
    for name in names:
        length = len(name.encode()) + 8  # the field's tag and length prefix, generously
        if batch and size + length > budget:
            yield batch
            batch, size = [], 0
        batch.append(name)
        size += length
    if batch:
        yield batch


def pull_into(
    open_stream: OpenStream,
    open_listing: OpenListing,
    params: Any,
    progress: Progress,
    read_listed: ReadListed | None = None,
) -> None:
    """Fill the local parameters (or arrays) of the mapping `params` with the store's data.

    `open_stream(names)` starts one Pull call, `open_listing(select)` one CollectParams
    call; `progress(total_bytes)` gives the bar the writes update; `read_listed`, when given,
    is tried first whenever the names could be listed. Raises
    `FailedPrecondition` naming the first parameter whose local shape or dtype differs from
    the store's, `Aborted` when writes kept landing between the parts of a split pull, and the
    errors of the Pull call itself; the local parameters are then as they were before, but
    after a connection lost mid-stream (see the module's notes).
    """
    names = list(params.keys())
    calls = [batch for part in parts(params, PARALLEL_CALLS, PART_MIN_BYTES)
             for batch in batches(part)]
    for _ in range(ATTEMPTS):
        listing = _checked_listing(open_listing, params)
        if listing is not None and read_listed is not None:
            try:
                if read_listed(params, listing, progress):
                    return
            except Aborted:
                continue  # written since it was listed: list it again
        pull = _Pull(params, progress, listing.version if listing is not None else None)
        try:
            versions = set(pull.read_all(calls, open_stream))
            if len(versions) <= 1:
                pull.finish()
                return
        except BaseException:
            pull.undo()
            raise
        pull.undo()
    raise Aborted(f"the store kept changing during a pull of {len(names)} parameters; "
                  "try again")


def parts(params: Any, calls: int = PARALLEL_CALLS,
          min_bytes: int = PART_MIN_BYTES) -> list[list[str]]:
    """The names of `params` in up to `calls` parts of about equal bytes, each of at least
    `min_bytes` (one part for a small pull), each in the order of `params`. Names of one local
    parameter stay in one part, where the store sends its tensor once."""
    sizes: dict[int, int] = {}  # id of a destination -> its bytes
    names = list(params.keys())
    for name in names:
        destination = params[name]
        if isinstance(destination, np.ndarray):
            sizes[id(destination)] = destination.nbytes  # the common case, without a list
            continue
        arrays = _arrays_of(destination)
        sizes[id(destination)] = arrays[0].nbytes if arrays else 0
    count = min(calls, len(sizes), max(1, sum(sizes.values()) // min_bytes))
    if count <= 1:
        return [names] if names else []
    groups: dict[int, list[int]] = {}  # id of a destination -> positions of its names
    for position, name in enumerate(names):
        groups.setdefault(id(params[name]), []).append(position)
    loads = [0] * count
    members: list[list[int]] = [[] for _ in range(count)]
    for key in sorted(groups, key=sizes.__getitem__, reverse=True):  # biggest first
        lightest = loads.index(min(loads))
        loads[lightest] += sizes[key]
        members[lightest].extend(groups[key])
    return [[names[position] for position in sorted(part)] for part in members if part]


def _checked_listing(open_listing: OpenListing, params: Any) -> Listing | None:
    """Check every local destination against a listing of its name in the store; return the
    listing, or None when the names are too many to list in one regex.
    Raises `FailedPrecondition` for a mismatch, `ParameterNotFound` for a name not listed."""
    names = list(dict.fromkeys(params.keys()))
    if sum(map(len, names)) + len(names) > MAX_SELECT_LENGTH:
        return None  # the pattern would be longer still: escaping many names costs time
    pattern = "(?:" + "|".join(re.escape(name) for name in names) + ")$"
    if len(pattern) > MAX_SELECT_LENGTH:
        return None
    version = 0
    specs: dict[str, pb.ParameterSpec] = {}
    try:
        for index, page in enumerate(open_listing(pattern)):
            if index == 0:
                version = page.version
            specs.update((spec.name, spec) for spec in page.parameters)
    except InvalidArgument:
        return None  # a name the server's regex dialect reads otherwise: the pull checks it
    for name in names:
        spec = specs.get(name)
        if spec is None:  # refused here, before a parallel part may write anything
            raise ParameterNotFound(f"the store has no parameter {name!r}")
        if not spec.shape_unknown and (spec.has_data or spec.alias_of):
            destination = params[name]
            _check(name, _shape(spec), _dtype(spec), destination, _arrays_of(destination))
    return Listing(version, specs)


@dataclass(slots=True)  # one per parameter pulled: slots make it small and quick
class _Target:
    """Where one pulled tensor goes: the destination's arrays (the first receives the chunks),
    or, for a parameter without data yet, the chunks kept for `set_data`. A tensor that came
    whole in a batch keeps a view of its bytes until `finish` writes them."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype  # little-endian, as the bytes travel
    destination: Any
    arrays: tuple[np.ndarray, ...] | None
    whole: memoryview | None = None
    flat: np.ndarray | None = None  # the first array's bytes, written in place
    chunks: list[bytes] | None = None  # made when the first chunk is kept
    filled: int = 0


class _Stopped(Exception):
    """Another part of the pull failed: this one stops reading."""


class _Pull:
    """One attempt at a pull: writes as chunks arrive, and remembers how to undo them. Its
    parts may be read by several threads at once."""

    def __init__(self, params: Any, progress: Progress, checked_version: int | None) -> None:
        self.params = params
        self.progress = progress
        self.checked_version = checked_version
        # Appended to by the parts' threads without a lock: list.append is atomic (under the
        # GIL, and by the list's own lock in free-threaded builds), and a lock taken per
        # parameter costs more than the rest of its bookkeeping.
        self.targets: list[_Target] = []  # where each tensor went
        self.staged: list[_Staged] = []  # tensors that came whole, one _Staged per stream
        # (local name, tensor) sent without data; the tensor's target, or its array
        self.aliases: list[tuple[str, _Target | np.ndarray]] = []
        self.saved: list[tuple[np.ndarray, np.ndarray]] = []  # (array, its previous values)
        self._stopped = threading.Event()

    def read_all(self, calls: list[list[str]], open_stream: OpenStream) -> list[int]:
        """Read the Pull calls for the names in `calls`, up to `PARALLEL_CALLS` at a time;
        return their store versions. The first failure stops the other calls at their next
        message and is raised once they have stopped."""
        if len(calls) == 1:
            return [self.read(calls[0], open_stream(calls[0]))]
        errors: list[BaseException] = []  # in the order they happened

        def read(names: list[str]) -> int:
            try:
                return self.read(names, open_stream(names))
            except BaseException as error:
                self._stopped.set()
                if not isinstance(error, _Stopped):
                    errors.append(error)
                raise

        with futures.ThreadPoolExecutor(min(PARALLEL_CALLS, len(calls)),
                                        thread_name_prefix="paramstore-pull") as threads:
            running = [threads.submit(read, names) for names in calls]
            try:
                futures.wait(running)
            finally:
                self._stopped.set()  # an interrupted wait stops the reads too
        if errors:
            raise errors[0]
        return [call.result() for call in running]

    def read(self, names: list[str], replies: Iterable[pb.PullResponse]) -> int:
        """Read one Pull stream for `names` (`wire.read_pull`), writing as it goes; returns
        its store version."""
        position = 0
        keep_previous = True  # False when the stream reads the version the listing checked
        # tensor (target name) -> where it went in this stream: its target, or its array
        sources: dict[str, _Target | np.ndarray] = {}
        staged = _Staged()
        self.staged.append(staged)

        def start(spec: pb.ParameterSpec, whole: memoryview | None
                  ) -> Callable[[bytes], None] | None:
            nonlocal position
            if self._stopped.is_set():
                raise _Stopped
            if position >= len(names):
                raise ParamstoreError("the server sent more parameters than asked for")
            target = self._start(names[position], spec, whole, sources, staged, keep_previous)
            position += 1
            return None if target is None or whole is not None else self._writer(target)

        with contextlib.ExitStack() as stack:
            stack.callback(getattr(replies, "close", lambda: None))  # a call left early ends

            def begin(first: pb.PullBegin) -> Callable[[int], None]:
                nonlocal keep_previous
                keep_previous = first.version != self.checked_version
                return stack.enter_context(self.progress(first.data_bytes)).update

            try:
                version = wire.read_pull(replies, start, begin).version
            except wire.StreamError as error:
                raise ParamstoreError(str(error)) from None
        if position != len(names):
            raise ParamstoreError(f"asked for {len(names)} parameters, got {position}")
        return version

    def _writer(self, target: _Target) -> Callable[[bytes], None]:
        def write(chunk: bytes) -> None:
            if self._stopped.is_set():
                raise _Stopped
            _append(target, chunk)

        return write

    def _start(self, name: str, spec: pb.ParameterSpec, whole: memoryview | None,
               sources: dict[str, _Target | np.ndarray], staged: _Staged,
               keep_previous: bool) -> _Target | None:
        destination = self.params[name]
        alias_of = spec.alias_of  # each field read once: a read costs as much as a dict lookup
        source = None
        if whole is None and not spec.has_data:
            # An alias sent without data follows, in its stream, the name that carried the data.
            source = sources.get(alias_of)
            if source is None:
                return None  # no data in the store: the local parameter is left alone
        arrays = _arrays_of(destination)
        shape, dtype = (source.shape, source.dtype) if source is not None else \
            (_shape(spec), _dtype(spec))
        _check(name, shape, dtype, destination, arrays)
        if source is not None:
            self.aliases.append((name, source))
            return None
        if whole is not None and arrays is not None and len(arrays) == 1:
            staged.add(arrays[0], whole)  # the common case: one array, written by `finish`
            sources[alias_of or name] = arrays[0]
            return None
        # The target keeps no message and no list: what outlives a pull's reading is what the
        # garbage collector walks again and again.
        target = _Target(name, shape, dtype, destination, arrays, whole)
        # What `finish` writes (a tensor that came whole, aliases) needs no previous values:
        # `finish` runs only once every part of the pull arrived and agreed.
        if whole is None and arrays is not None:
            if keep_previous:
                self.saved.append((arrays[0], arrays[0].copy()))
            if arrays[0].flags.c_contiguous:
                target.flat = arrays[0].reshape(-1).view(np.uint8)
        sources[alias_of or name] = target
        self.targets.append(target)
        return target

    def finish(self) -> None:
        """Complete what waits for the whole stream: deferred parameters, non-contiguous and
        extra-context arrays, and aliases sent without data."""
        for staged in self.staged:
            staged.write()
        for target in self.targets:
            _settle(target)
        for name, source in self.aliases:
            destination = self.params[name]
            arrays = _arrays_of(destination)
            value = source if isinstance(source, np.ndarray) else _value_of(source)
            if arrays is None:
                destination.set_data(np.array(value))
            else:
                for array in arrays:
                    np.copyto(array, value)

    def undo(self) -> None:
        """Give every array written so far its previous values back."""
        for array, previous in reversed(self.saved):
            np.copyto(array, previous)
        self.saved.clear()


class _Staged:
    """The tensors of one stream that came whole, each for one array: their bytes copied
    together into one buffer, written into the arrays by `write`. Nothing per tensor outlives
    the reading but an (array, offset) pair, which the garbage collector stops tracking."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.places: list[tuple[np.ndarray, int]] = []

    def add(self, array: np.ndarray, whole: memoryview) -> None:
        self.places.append((array, len(self.data)))
        self.data += whole

    def write(self) -> None:
        """Write each tensor into its array (`_check` made sure that shape and dtype agree)."""
        data = self.data
        for array, offset in self.places:
            np.copyto(array, np.frombuffer(data, array.dtype, array.size, offset)
                      .reshape(array.shape))


def _append(target: _Target, chunk: bytes) -> None:
    """Write the next chunk of `target` (`wire.read_pull` checks that it fits)."""
    end = target.filled + len(chunk)
    if target.flat is not None:
        target.flat[target.filled:end] = np.frombuffer(chunk, np.uint8)
    elif target.chunks is None:
        target.chunks = [chunk]
    else:
        target.chunks.append(chunk)
    target.filled = end


def _settle(target: _Target) -> None:
    if target.arrays is None:  # a deferred parameter: it keeps the data for its initialization
        target.destination.set_data(np.array(_value_of(target)))
        return
    first = target.arrays[0]
    if target.whole is not None:  # `_check` made sure that shape and dtype agree
        np.copyto(first, np.frombuffer(target.whole, first.dtype).reshape(first.shape))
    elif target.flat is None:
        first[...] = _value_of(target)
    if len(target.arrays) > 1:
        for other in target.arrays[1:]:
            np.copyto(other, first)


def _value_of(target: _Target) -> np.ndarray:
    """The pulled tensor as an array (a read-only view of the received bytes, for one that
    came whole)."""
    if target.flat is not None:
        return target.arrays[0]  # type: ignore[index]
    received = target.whole if target.whole is not None else b"".join(target.chunks or ())
    return np.frombuffer(received, target.dtype).reshape(target.shape)


def _shape(spec: pb.ParameterSpec) -> tuple[int, ...]:
    return tuple(spec.shape)


def _dtype(spec: pb.ParameterSpec) -> np.dtype:
    return _wire_dtype(spec.dtype)


@functools.lru_cache(maxsize=64)  # bounded: names come from the wire
def _wire_dtype(name: str) -> np.dtype:
    return numpy_dtype(name).newbyteorder("<")


# ---- destinations ----------------------------------------------------------------------------


def _is_parameter(value: Any) -> bool:
    return hasattr(value, "list_data") and hasattr(value, "set_data")


def _arrays_of(destination: Any) -> tuple[np.ndarray, ...] | None:
    """The NumPy arrays a pull writes into, or None for a parameter without data yet. A tuple
    of arrays, which the garbage collector stops tracking."""
    if isinstance(destination, np.ndarray):
        return (destination,)  # the cheap test first: a failed hasattr raises inside
    if _is_parameter(destination):
        try:
            return tuple(np.asarray(array) for array in destination.list_data())
        except RuntimeError:  # not initialized, or its initialization is deferred
            return None
    return (np.asarray(destination),)


def _check(name: str, shape: tuple[int, ...], dtype: np.dtype, destination: Any,
           arrays: tuple[np.ndarray, ...] | None) -> None:
    """Raise `FailedPrecondition` unless `destination` can take a tensor of `shape` and
    `dtype`."""
    if arrays is None:
        local_shape = tuple(destination.shape or ())
        agrees = len(local_shape) == len(shape) and all(
            known in (0, dim) for known, dim in zip(local_shape, shape))
        if not agrees:
            raise FailedPrecondition(f"parameter {name!r} has shape {local_shape} locally and "
                                     f"{shape} in the store")
        return
    for array in arrays:
        if array.shape != shape:
            raise FailedPrecondition(f"parameter {name!r} has shape {array.shape} locally and "
                                     f"{shape} in the store")
        if array.dtype != dtype:
            raise FailedPrecondition(f"parameter {name!r} has dtype {array.dtype} locally and "
                                     f"{dtype} in the store")
        if not array.flags.writeable:
            raise FailedPrecondition(f"parameter {name!r} is a read-only array locally")
