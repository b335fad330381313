"""The safetensors codec: named tensors, their ties and metadata, in one plain safetensors file.

`plan` lays a file out byte for byte as the `safetensors` library would, from the arrays'
shapes and dtypes, so that it is written to disk or sent to an object store from the arrays'
own memory; the library validates files when they are opened. A file written here opens with
any safetensors reader (`safetensors.numpy.load_file`). What
safetensors itself cannot say lives in the header's `__metadata__` under `paramstore.*` keys:

- `paramstore.order`: every name (tensors and aliases) in the caller's order, as a JSON list,
  because safetensors readers return tensors sorted by name;
- `paramstore.aliases`: alias -> target, as a JSON object; a tied tensor is stored once;
- `paramstore.crc32c`: name -> CRC-32C of that tensor's bytes, as a JSON object, so that every
  tensor is verified on its own, a partial read included. CRC-32C because processors compute it
  in hardware (the `crc32c` package: 3-4x zlib's CRC-32 here) and object stores speak it.

Reading maps the file and hands out read-only views of the mapping (`open_mapped`) or copies
(`load`). The library's `get_tensor` would copy every tensor: a server restoring a store would
then hold the old and the new data at once. Mapping is why this module reads the header's
offsets itself, after the library has validated the file. Bytes that are no file (read into
memory, `loads`, or by ranges, `open_ranged`) get the library's checks made here, in Python:
the library opens only files, and its `deserialize` copies every tensor.
"""

from __future__ import annotations

import bisect
import json
import math
import mmap
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import crc32c
import numpy as np
from safetensors import SafetensorError, safe_open

from paramstore import _files
from paramstore.dtypes import BFLOAT16, numpy_dtype

__all__ = [
    "Checkpoint", "CheckpointError", "Planned", "check_readable", "checksums_of", "dumps", "load",
    "loads", "open_mapped", "open_ranged", "plan", "read_metadata", "save", "validate_name",
    "write",
]

ORDER_KEY = "paramstore.order"
ALIASES_KEY = "paramstore.aliases"
CHECKSUMS_KEY = "paramstore.crc32c"
_LEGACY_CHECKSUM_KEYS = ("paramstore.checksum", "paramstore.crc32")  # earlier files: not verified
# Keys the codec writes itself; callers' metadata may use any other key.
RESERVED_KEYS = frozenset({ORDER_KEY, ALIASES_KEY, CHECKSUMS_KEY, *_LEGACY_CHECKSUM_KEYS})

MAX_HEADER_BYTES = 100_000_000  # the bound the safetensors library applies when reading
MAX_NAME_LENGTH = 1024
MAX_DIMENSIONS = 64

# safetensors dtype label <-> NumPy dtype (little-endian on disk).
_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "U8": np.dtype("<u1"), "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_BF16 = "BF16"  # bfloat16: its NumPy dtype comes from ml_dtypes, imported when first met
# Keyed by the dtype object: `dtype.name` is slow enough to dominate many tiny tensors.
_NAME_OF_DTYPE: dict[np.dtype, str] = {dtype: dtype.name for dtype in _DTYPES.values()}
_LABEL_OF_DTYPE: dict[np.dtype, str] = {dtype: label for label, dtype in _DTYPES.items()}
# The library's order of tensors in a file: by dtype in this order (its dtype enumeration's,
# backwards), then by name.
_FILE_ORDER = ("U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "I8", "U8",
               "BOOL")
_FILE_RANK = {label: rank for rank, label in enumerate(_FILE_ORDER)}
_LABELS = frozenset({*_NAME_OF_DTYPE.values(), BFLOAT16})
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
_VERIFY_BLOCK = 64 << 20  # mapped bytes checksummed before their pages are given back
_OVERLAP_BYTES = 16 << 20  # from this size on, checksums are computed while the file is written
_SMALL_ARRAY_BYTES = 64 << 10  # smaller arrays are written in runs, copied together
_RUN_LENGTH = 256  # small arrays per run: a run stays within 16 MiB
_HEADER_GUESS = 64 << 10  # a ranged read's first request: the header of most files, in one
_SIZE_LIMIT = 1 << 64  # the library's sizes are 64-bit


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read: the message names the defect."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    `tensors` maps every name, in the order it was saved, to its array; an alias maps to the
    very same array object as its target (one tensor, many names). `aliases` maps each alias to
    its target. `metadata` holds the caller's `__metadata__` entries (not the codec's own keys).
    """

    tensors: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def stored(self) -> dict[str, np.ndarray]:
        """The tensors stored once each: every name that is not an alias."""
        return {name: array for name, array in self.tensors.items() if name not in self.aliases}


def validate_name(name: object) -> str:
    """Return `name` if it can name a tensor; raise `CheckpointError` saying why it cannot."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"a tensor name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise CheckpointError(
            f"tensor name {name[:40]!r}... is {len(name)} characters long, "
            f"more than the {MAX_NAME_LENGTH} allowed"
        )
    if name == "__metadata__":
        raise CheckpointError("'__metadata__' is reserved by safetensors and cannot name a tensor")
    if _CONTROL_CHARACTER.search(name):
        raise CheckpointError(f"tensor name {name!r} contains a control character")
    return name


# ---- writing -----------------------------------------------------------------------------------


def save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    *,
    aliases: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write `tensors` to `path` as safetensors, atomically (see `_files.replace`).

    `tensors` maps names to arrays (anything `numpy.asarray` accepts), in the order to keep.
    A name whose value is the same object as an earlier name's is a tie: the tensor is stored
    once and the name recorded as an alias. `aliases` adds alias -> target names whose target
    is a key of `tensors`. `metadata` (str -> str) goes into `__metadata__`.
    Raises `CheckpointError` for bad names, dtypes or metadata, `OSError` for I/O failures.
    """
    _files.replace(path, lambda temporary: write(temporary, tensors, aliases=aliases,
                                                 metadata=metadata))


def write(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    *,
    aliases: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """`save` without the atomic replace or the fsync, for a caller that commits the file
    itself. Every limit the reader enforces is checked, so a file written is a file read."""
    plan(tensors, aliases=aliases, metadata=metadata, checksums_in_header=True).write_file(path)


@dataclass(frozen=True)
class Planned:
    """A safetensors file laid out before it is written: its header, computed from the arrays'
    shapes and dtypes exactly as the library computes it, then the arrays' bytes in file order.

    Its bytes are what the library writes for the same arguments (the library leaves the order
    of the `__metadata__` keys to a hash map; here it is the caller's), so the file can be sent
    from the arrays' own memory (`pieces`) or written to a file (`write_file`).
    """

    header: bytes  # the 8-byte length, then the JSON header padded with spaces
    stored: dict[str, np.ndarray]  # in file order: C-contiguous, little-endian
    metadata: dict[str, str]  # the header's `__metadata__`

    @property
    def size(self) -> int:
        return len(self.header) + sum(array.nbytes for array in self.stored.values())

    def pieces(self) -> list[memoryview]:
        """The file's bytes in order: the header, then the arrays' bytes, a large array's from
        its own memory, small arrays of one dtype joined in runs (one copy, one piece, rather
        than a piece per array: thousands of tiny writes cost more than the copy)."""
        pieces = [memoryview(self.header)]
        run: list[np.ndarray] = []
        for array in self.stored.values():
            small = array.nbytes < _SMALL_ARRAY_BYTES
            if run and (not small or array.dtype != run[0].dtype or len(run) == _RUN_LENGTH):
                pieces.append(_joined(run))
                run = []
            if small:
                run.append(array)
            else:
                pieces.append(_bytes_of(array))
        if run:
            pieces.append(_joined(run))
        return pieces

    def checksums(self) -> dict[str, int]:
        """The CRC-32C of each stored tensor."""
        return _checksums(self.stored)

    def checksums_while(self, write: Callable[[], object]) -> dict[str, int]:
        """`checksums()`, computed on another core while `write()` runs (both let go of the
        GIL); for a small file, one after the other, quicker than a thread's hand-over."""
        if self.size < _OVERLAP_BYTES:
            write()
            return self.checksums()
        with ThreadPoolExecutor(max_workers=1) as pool:
            summing = pool.submit(self.checksums)
            write()
            return summing.result()

    def write_file(self, path: str | os.PathLike[str]) -> None:
        """Write the file's `pieces` to `path` (created or truncated)."""
        with open(path, "wb") as file:
            for piece in self.pieces():
                file.write(piece)


def plan(
    tensors: Mapping[str, Any],
    *,
    aliases: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    checksums_in_header: bool = False,
) -> Planned:
    """Lay out the file `write` would write (see `save` for the arguments). Without
    `checksums_in_header` the checksums are left out of the header, for a caller that keeps
    them beside the file (a commit record) and passes them to the reader. The header passes the
    checks every reader applies. Raises `CheckpointError` like `save`."""
    stored, header_metadata = _plan(tensors, aliases, metadata)
    if checksums_in_header:
        header_metadata[CHECKSUMS_KEY] = _json(_checksums(stored))
    labelled = sorted((_FILE_RANK[label], name, label, array) for name, array, label in (
        (name, array, _label_of(array.dtype)) for name, array in stored.items()))
    # The JSON `json.dumps(..., separators=(",", ":"), ensure_ascii=False)` writes, put
    # together here: one string format per tensor rather than an encoder walking 100,000 dicts.
    parts = ['{"__metadata__":', json.dumps(header_metadata, separators=(",", ":"),
                                             ensure_ascii=False)]
    offset = 0
    for _, name, label, array in labelled:
        end = offset + array.nbytes
        parts.append(f',{_json_string(name)}:{{"dtype":"{label}","shape":['
                     f'{",".join(map(str, array.shape))}],"data_offsets":[{offset},{end}]}}')
        offset = end
    parts.append("}")
    try:
        text = "".join(parts).encode()
    except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 reader could read it
        raise CheckpointError(f"a name or metadata value is not valid Unicode text: {error}") \
            from None
    text += b" " * (-len(text) % 8)
    if len(text) > MAX_HEADER_BYTES:
        raise _header_too_large(None)
    header = len(text).to_bytes(8, "little") + text
    # Nothing is parsed back: `_plan` checked every name, dtype, shape and metadata value a
    # reader checks, and the layout above is back to back by construction.
    ordered = {name: array for _, name, _, array in labelled}
    return Planned(header, ordered, header_metadata)


def dumps(
    tensors: Mapping[str, Any],
    *,
    aliases: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes `save` would write. Raises `CheckpointError` like `save`."""
    return b"".join(plan(tensors, aliases=aliases, metadata=metadata,
                         checksums_in_header=True).pieces())


def _header_too_large(length: int | None) -> CheckpointError:
    size = "would be larger than" if length is None else f"has {length} bytes, more than"
    return CheckpointError(
        f"the header {size} the {MAX_HEADER_BYTES}-byte limit of safetensors readers "
        "(too many tensors, or too much metadata)"
    )


def _plan(
    tensors: Mapping[str, Any],
    aliases: Mapping[str, str] | None,
    metadata: Mapping[str, str] | None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Validate the inputs; return the arrays stored once each and the header's metadata
    (without the checksums)."""
    order: list[str] = []
    stored: dict[str, np.ndarray] = {}
    ties: dict[str, str] = {}
    first_name_of: dict[int, str] = {}
    seen: list[np.ndarray] = []  # keeps every array alive so that no id() is reused
    for name, value in tensors.items():
        validate_name(name)
        order.append(name)
        array = np.asarray(value)  # an NDArray gives its own buffer: ties survive the wrapper
        seen.append(array)
        if id(array) in first_name_of:
            ties[name] = first_name_of[id(array)]
            continue
        first_name_of[id(array)] = name
        stored[name] = _little_endian_contiguous(name, array)
    for alias, target in (aliases or {}).items():
        validate_name(alias)
        if alias in tensors or alias in ties:
            raise CheckpointError(f"alias {alias!r} is also given as a tensor or another alias")
        if target not in tensors:
            raise CheckpointError(f"alias {alias!r} names target {target!r}, which is not saved")
        order.append(alias)
        ties[alias] = ties.get(target, target)
    header_metadata = {
        **_checked_metadata(metadata),
        ORDER_KEY: json.dumps(order),
        ALIASES_KEY: json.dumps(ties),
    }
    return stored, header_metadata


def checksums_of(loaded: Checkpoint) -> dict[str, int]:
    """The CRC-32C of each stored tensor of `loaded`, as `write` returns them."""
    return _checksums(loaded.stored())


def _checksums(stored: Mapping[str, np.ndarray]) -> dict[str, int]:
    # The arrays are C-contiguous: crc32c reads their buffers as they are.
    return {name: crc32c.crc32c(array) for name, array in stored.items()}


_json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _label_of(dtype: np.dtype) -> str:
    return _LABEL_OF_DTYPE.get(dtype) or _BF16  # `_plan` let through no other dtype


def _little_endian_contiguous(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype in _NAME_OF_DTYPE and array.flags.c_contiguous:
        return array  # the common case, checked first because it is cheap
    if array.dtype.name not in _LABELS:
        raise CheckpointError(
            f"tensor {name!r} has dtype {array.dtype}, which safetensors cannot store; "
            f"supported: {', '.join(sorted(_LABELS))}"
        )
    if array.ndim > MAX_DIMENSIONS:
        raise CheckpointError(f"tensor {name!r} has {array.ndim} dimensions, more than "
                              f"the {MAX_DIMENSIONS} a checkpoint may hold")
    little = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    # A copy only when the array is big-endian or not C-contiguous.
    return np.asarray(array, dtype=little, order="C")


def _checked_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise CheckpointError(
                f"metadata must map strings to strings, got {key!r}: {value!r}"
            )
        if key in RESERVED_KEYS:
            raise CheckpointError(f"metadata key {key!r} is reserved by the checkpoint codec")
        checked[key] = value
    return checked


def _joined(run: list[np.ndarray]) -> memoryview:
    """The bytes of `run` (arrays of one dtype), back to back."""
    return _bytes_of(run[0] if len(run) == 1 else np.concatenate(run, axis=None))


def _bytes_of(array: np.ndarray) -> memoryview:
    """The array's bytes without a copy (the array is C-contiguous)."""
    if array.size == 0:
        return memoryview(b"")  # a view with a zero in its shape cannot be cast
    # As bytes first: the buffer protocol has no format for bfloat16.
    return memoryview(array.reshape(-1).view(np.uint8))


# ---- reading -----------------------------------------------------------------------------------


def open_mapped(
    path: str | os.PathLike[str],
    checksums: Mapping[str, int] | None = None,
    select: Callable[[str], bool] | None = None,
) -> Checkpoint:
    """Read and validate a safetensors file whose arrays are read-only views of a memory map.

    Nothing is copied: pages are read when an array is used (every checksum is verified first,
    giving each block's pages back as it goes, so that opening a file holds no data in memory).
    `checksums` (name -> CRC-32C, as `write` returns them) are verified in place of the
    header's. `select`: only the names it keeps (and the targets of the aliases it keeps) are
    returned, and only their bytes are read and verified.
    The file must never be modified while mapped; committed files here never are.
    Raises `CheckpointError` for a malformed or corrupt file, `OSError` when it cannot be read.
    """
    if select is None:
        check_readable(path)
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            raise CheckpointError(f"{os.fspath(path)!r} is empty, not a safetensors file")
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if select is not None:
        # No readahead into the tensors that were not selected: read the header's pages on
        # their own first, so that the library's checks find them cached.
        mapped.madvise(mmap.MADV_RANDOM)
        bytes(mapped[:8 + _header_length(mapped[:8], len(mapped))])
        check_readable(path)
    view = memoryview(mapped)
    layout = _read_layout(view[:_header_end(view)], len(view), select)
    if select is not None:
        _read_only_spans(mapped, layout.spans.values())
    return _assembled(layout, lambda begin: (view, begin), checksums, mapped)


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a safetensors file into writable arrays of their own.

    Raises `CheckpointError` for a malformed or corrupt file, `OSError` when it cannot be read.
    """
    mapped = open_mapped(path)
    copies: dict[int, np.ndarray] = {}
    tensors = {name: copies.setdefault(id(array), np.array(array))
               for name, array in mapped.tensors.items()}
    return Checkpoint(tensors, mapped.aliases, mapped.metadata)


def loads(
    data: bytes | bytearray | memoryview, checksums: Mapping[str, int] | None = None
) -> Checkpoint:
    """Validate safetensors bytes and return their `Checkpoint` without copying tensor data:
    the library's checks of the header and the layout (made here, on the bytes as they are),
    then the codec's, as `open_mapped` makes them. The arrays are views of `data` (writable
    when `data` is). `checksums`: as in `open_mapped`. Raises `CheckpointError` naming the
    first defect found; nothing is returned from bytes that fail any check.
    """
    view = memoryview(data).cast("B")
    layout = _read_layout(view[:_header_end(view)], len(view))
    return _assembled(layout, lambda begin: (view, begin), checksums)


def open_ranged(
    size: int,
    read: Callable[[list[tuple[int, int]]], Sequence[bytes | bytearray | memoryview]],
    checksums: Mapping[str, int] | None = None,
    select: Callable[[str], bool] | None = None,
    *,
    run_bytes: int = 1 << 62,
) -> Checkpoint:
    """A checkpoint of `size` bytes that `read(spans)` reads piecewise (the bytes of each
    [start, stop) span, as ranged GETs of an object), checked as `loads` checks bytes: the
    header first, then only the tensors returned (all, or those `select` keeps, as in
    `open_mapped`), adjacent ones joined in spans of up to `run_bytes` (a larger tensor is a
    span of its own). The arrays are read-only views of what `read` returns. Raises
    `CheckpointError`, and what `read` raises."""
    head = memoryview(read([(0, min(size, _HEADER_GUESS))])[0]).cast("B")
    header_end = 8 + _header_length(head[:8], size)
    if header_end > len(head):
        head = memoryview(bytes(head) + bytes(read([(len(head), header_end)])[0]))
    layout = _read_layout(head[:header_end], size, select)
    runs = _runs(layout.spans.values(), run_bytes)
    buffers = [memoryview(buffer).cast("B") for buffer in read(runs)] if runs else []
    for (start, stop), buffer in zip(runs, buffers):
        if len(buffer) != stop - start:
            raise CheckpointError(f"bytes [{start}, {stop}) of the file read as {len(buffer)} "
                                  "bytes: it changed or is shorter than its header says")
    starts = [start for start, _ in runs]

    def located(begin: int) -> tuple[memoryview, int]:
        index = bisect.bisect_right(starts, begin) - 1
        if index >= 0 and begin < starts[index] + len(buffers[index]):
            return buffers[index], begin - starts[index]
        return memoryview(b""), 0  # an empty tensor, in no run

    return _assembled(layout, located, checksums)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (the codec's keys included), reading only its
    header. Raises `CheckpointError` for a malformed header, `OSError` when it cannot be read.
    """
    check_readable(path)
    with open(path, "rb") as file:
        length = _header_length(file.read(8), os.fstat(file.fileno()).st_size)
        header = _parse_header(file.read(length))
    return _checked_stored_metadata(header.get("__metadata__", {}))


def check_readable(path: str | os.PathLike[str]) -> None:
    """Check, from its header alone, that any safetensors reader can open the file: the
    library's own checks of the header and the layout (bounds, offsets, sizes). Raises
    `CheckpointError` naming the defect."""
    try:
        with safe_open(os.fspath(path), framework="np"):
            pass
    except SafetensorError as error:
        raise CheckpointError(f"{os.fspath(path)!r} is not a readable safetensors file: "
                              f"{error}") from None


@dataclass
class _Layout:
    """What a file's header says, checked: the tensors to return and where their bytes are."""

    entries: dict[str, _Entry]  # every stored tensor: dtype, shape, [begin, end) in the file
    aliases: dict[str, str]  # of the names returned
    order: list[str]  # the names returned, in the caller's order
    spans: dict[str, tuple[int, int]]  # [begin, end) in the file of each stored name returned
    metadata: dict[str, str]  # the caller's
    recorded: Any  # the header's checksums (parsed JSON), or None


def _header_end(data: memoryview) -> int:
    return 8 + _header_length(data[:8], len(data))


def _read_layout(
    head: memoryview, size: int, select: Callable[[str], bool] | None = None
) -> _Layout:
    """The layout of a `size`-byte file whose first bytes, through its header, are `head`:
    the library's checks (`_check_layout`) and the codec's. `select`: as in `open_mapped`."""
    if head[8:9] != b"{":
        raise CheckpointError("the header must be a JSON object starting with '{'")
    header = _parse_header(head[8:])
    metadata = _checked_stored_metadata(header.pop("__metadata__", {}))
    entries = {name: (dtype, shape, len(head) + begin, len(head) + end)
               for name, (dtype, shape, begin, end) in _checked_entries(header)}
    _check_layout(entries, len(head), size)
    aliases = _stored_aliases(metadata.pop(ALIASES_KEY, None), entries)
    order = _stored_order(metadata.pop(ORDER_KEY, None), entries, aliases)
    if select is not None:
        order = [name for name in order if select(name)]
        wanted = {aliases.get(name, name) for name in order}
        chosen = set(order)  # a list's `in` would make this quadratic in the tensors
        order += [name for name in entries if name in wanted and name not in chosen]
        aliases = {alias: target for alias, target in aliases.items() if alias in chosen}
    spans = {name: entries[name][2:] for name in order if name in entries}
    for legacy in _LEGACY_CHECKSUM_KEYS:
        metadata.pop(legacy, None)
    recorded = metadata.pop(CHECKSUMS_KEY, None)
    if recorded is not None:
        recorded = _json_value(CHECKSUMS_KEY, recorded)
    return _Layout(entries, aliases, order, spans, metadata, recorded)


def _assembled(
    layout: _Layout,
    located: Callable[[int], tuple[memoryview, int]],
    checksums: Mapping[str, int] | None = None,
    mapped: mmap.mmap | None = None,
) -> Checkpoint:
    """The checkpoint whose bytes at file offset `begin` are at `located(begin)` (a buffer and
    an offset in it), its checksums verified: `checksums` when given, else the header's.
    `mapped`, when the buffer is a memory map, has its pages given back once checksummed."""
    stored: dict[str, np.ndarray] = {}
    for name, (begin, end) in layout.spans.items():
        dtype, shape = layout.entries[name][:2]
        buffer, offset = located(begin)
        stored[name] = np.frombuffer(buffer, dtype=dtype, count=(end - begin) // dtype.itemsize,
                                     offset=offset).reshape(shape)
    checksums = layout.recorded if checksums is None else checksums
    if checksums is not None:
        _verify_checksums(checksums, located, layout.spans, mapped, set(layout.entries))
    tensors = {name: stored[layout.aliases.get(name, name)] for name in layout.order}
    return Checkpoint(tensors=tensors, aliases=layout.aliases, metadata=layout.metadata)


def _runs(spans: Iterable[tuple[int, int]], run_bytes: int) -> list[tuple[int, int]]:
    """The [start, stop) runs that cover the non-empty `spans`, adjacent spans joined while a
    run stays within `run_bytes`."""
    runs: list[tuple[int, int]] = []
    for begin, end in sorted(span for span in spans if span[1] > span[0]):
        if runs and runs[-1][1] == begin and end - runs[-1][0] <= run_bytes:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((begin, end))
    return runs


_Entry = tuple[np.dtype, tuple[int, ...], int, int]


def _header_length(prefix: bytes | memoryview, total: int) -> int:
    if total < 8 or len(prefix) < 8:
        raise CheckpointError(f"not a safetensors file: {total} bytes, fewer than 8")
    length = int.from_bytes(prefix[:8], "little")
    if length > MAX_HEADER_BYTES:
        raise _header_too_large(length)
    if 8 + length > total:
        raise CheckpointError(f"header length {length} runs past the end of the {total} bytes")
    return length


def _parse_header(text: bytes | memoryview) -> dict[str, Any]:
    try:
        header = json.loads(bytes(text).decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"the header is not valid UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"the header must be a JSON object, got {type(header).__name__}")
    try:  # Python's JSON takes escaped lone surrogates, which are no Unicode text
        json.dumps(header, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise CheckpointError(f"the header is not valid UTF-8 JSON: {error}") from None
    return header


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python's JSON keeps the last of duplicate keys; another reader may keep the first.
    unique = dict(pairs)
    if len(unique) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise CheckpointError(f"the header names {duplicate!r} more than once")
    return unique


def _checked_stored_metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in raw.items()
    ):
        raise CheckpointError("'__metadata__' must be a JSON object of strings to strings")
    return dict(raw)


def _checked_entries(header: dict[str, Any]) -> Iterator[tuple[str, _Entry]]:
    """Each tensor's entry, with the types the library requires (a dtype, a shape and two data
    offsets, all sizes) and what it does not check: names, dtypes NumPy can hold, the number
    of axes. Offsets are from the start of the data."""
    for name, info in header.items():
        validate_name(name)
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise CheckpointError(f"tensor {name!r} needs a dtype, a shape and data_offsets")
        label, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(label, str) or label not in _DTYPES and label != _BF16:
            raise CheckpointError(
                f"tensor {name!r} has dtype {label!r}, which paramstore does not support "
                f"(the safetensors NumPy reader cannot load it); supported: "
                f"{', '.join([*_DTYPES, _BF16])}"
            )
        if not _sizes(shape) or not _sizes(offsets) or len(offsets) != 2:
            raise CheckpointError(f"tensor {name!r}: its shape and data_offsets must be lists "
                                  "of sizes, two offsets")
        if len(shape) > MAX_DIMENSIONS:
            raise CheckpointError(f"tensor {name!r} has {len(shape)} dimensions, more than "
                                  f"{MAX_DIMENSIONS}")
        dtype = numpy_dtype(BFLOAT16) if label == _BF16 else _DTYPES[label]
        yield name, (dtype, tuple(shape), offsets[0], offsets[1])


def _sizes(value: Any) -> bool:
    return isinstance(value, list) and all(
        type(item) is int and 0 <= item < _SIZE_LIMIT for item in value)


def _check_layout(entries: Mapping[str, _Entry], data_start: int, size: int) -> None:
    """The library's checks of where the tensors are: back to back from the start of the
    data to the end of the file, each as long as its shape and dtype make it."""
    position = data_start
    for name, (dtype, shape, begin, end) in sorted(entries.items(),
                                                   key=lambda item: item[1][2:]):
        if begin != position or end < begin:
            raise CheckpointError(f"tensor {name!r} has data offsets [{begin - data_start}, "
                                  f"{end - data_start}]; the data must hold the tensors back "
                                  f"to back (expected {position - data_start})")
        length = math.prod(shape) * dtype.itemsize
        if length >= _SIZE_LIMIT or end - begin != length:
            raise CheckpointError(f"tensor {name!r} of shape {list(shape)} and dtype {dtype} "
                                  f"holds {length} bytes, not the {end - begin} its offsets span")
        position = end
    if position != size:
        raise CheckpointError(f"the tensors' data ends at byte {position} of a file of {size} "
                              "bytes")


def _verify_checksums(
    recorded: Any,
    located: Callable[[int], tuple[memoryview, int]],
    spans: Mapping[str, tuple[int, int]],
    mapped: mmap.mmap | None,
    names: set[str],
) -> None:
    """Verify the tensors of `spans`; `recorded` must hold a checksum for each of `names`."""
    if not isinstance(recorded, dict) or set(recorded) != names or not all(
        isinstance(value, int) for value in recorded.values()
    ):
        raise CheckpointError(f"{CHECKSUMS_KEY} must give one CRC-32C for every stored tensor")
    for name, (begin, end) in spans.items():
        buffer, offset = located(begin)
        checksum = 0
        for start in range(0, end - begin, _VERIFY_BLOCK):
            stop = min(start + _VERIFY_BLOCK, end - begin)
            checksum = crc32c.crc32c(buffer[offset + start:offset + stop], checksum)
            if mapped is not None and stop - start == _VERIFY_BLOCK:
                _give_back(mapped, begin + start, begin + stop)
        if checksum != recorded[name]:
            raise CheckpointError(
                f"checksum mismatch in tensor {name!r}: the file records {recorded[name]:08x} "
                f"but its data hashes to {checksum:08x}; the file is corrupt"
            )


def _read_only_spans(mapped: mmap.mmap, spans: Iterable[tuple[int, int]]) -> None:
    """Have the kernel read the selected spans ahead in large requests (the mapping reads
    nothing ahead on its own, so that the tensors around them are never read)."""
    for begin, end in spans:
        first = begin - begin % mmap.PAGESIZE
        if end > first:
            mapped.madvise(mmap.MADV_WILLNEED, first, end - first)


def _give_back(mapped: mmap.mmap, start: int, stop: int) -> None:
    """Drop the mapped pages of [start, stop) from this process (the file keeps them)."""
    first = start - start % mmap.PAGESIZE
    mapped.madvise(mmap.MADV_DONTNEED, first, stop - first - (stop - first) % mmap.PAGESIZE)


def _stored_aliases(raw: str | None, entries: Mapping[str, Any]) -> dict[str, str]:
    if raw is None:
        return {}
    aliases = _json_value(ALIASES_KEY, raw)
    if not isinstance(aliases, dict):
        raise CheckpointError(f"{ALIASES_KEY} must be a JSON object of alias to target")
    for alias, target in aliases.items():
        validate_name(alias)
        if alias in entries:
            raise CheckpointError(f"alias {alias!r} is also a stored tensor")
        if not isinstance(target, str) or target not in entries:
            raise CheckpointError(f"alias {alias!r} targets {target!r}, which is not stored")
    return aliases


def _stored_order(
    raw: str | None, entries: Mapping[str, Any], aliases: dict[str, str]
) -> list[str]:
    if raw is None:
        return [*entries, *aliases]  # a foreign file: header order, then aliases
    order = _json_value(ORDER_KEY, raw)
    expected = set(entries) | set(aliases)
    if (
        not isinstance(order, list)
        or not all(isinstance(name, str) for name in order)
        or len(order) != len(expected)
        or set(order) != expected
    ):
        raise CheckpointError(
            f"{ORDER_KEY} must list every tensor and alias exactly once"
        )
    return order


def _json_value(key: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"metadata {key!r} is not valid JSON: {error}") from None
