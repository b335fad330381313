"""The safetensors codec: named tensors, their ties and metadata, in one plain safetensors file.

A file written here opens with any safetensors reader (`safetensors.numpy.load_file`). What
safetensors itself cannot say lives in the header's `__metadata__` under `paramstore.*` keys:

- `paramstore.order`: every name (tensors and aliases) in the caller's order, as a JSON list,
  because safetensors readers return tensors sorted by name;
- `paramstore.aliases`: alias -> target, as a JSON object; a tied tensor is stored once;
- `paramstore.checksum`: `crc32:<8 hex digits>` of the data section, verified on load.

Everything read is validated before it is used (header bounds, JSON, dtypes, shapes, offsets,
names, alias targets, checksum); any defect raises `CheckpointError`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Checkpoint", "CheckpointError", "dumps", "load", "loads", "read_metadata", "save",
    "validate_name",
]

ORDER_KEY = "paramstore.order"
ALIASES_KEY = "paramstore.aliases"
CHECKSUM_KEY = "paramstore.checksum"
# Keys the codec writes itself; callers' metadata may use any other key.
RESERVED_KEYS = frozenset({ORDER_KEY, ALIASES_KEY, CHECKSUM_KEY})

MAX_HEADER_BYTES = 100_000_000  # the bound safetensors readers apply
MAX_NAME_LENGTH = 1024
MAX_DIMENSIONS = 64
_HEADER_ALIGNMENT = 8  # the data section starts aligned, so loaded arrays are aligned too

# safetensors dtype label <-> NumPy dtype (little-endian on disk).
_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "U8": np.dtype("<u1"), "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_LABELS: dict[str, str] = {dtype.name: label for label, dtype in _DTYPES.items()}
# Keyed by the dtype object itself: `dtype.name` is slow enough to dominate many tiny tensors.
_LABEL_OF_DTYPE: dict[np.dtype, str] = {dtype: label for label, dtype in _DTYPES.items()}
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


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
    """Write `tensors` to `path` as safetensors, atomically.

    `tensors` maps names to arrays (anything `numpy.asarray` accepts), in the order to keep.
    A name whose value is the same object as an earlier name's is a tie: the tensor is stored
    once and the name recorded as an alias. `aliases` adds alias -> target names whose target
    is a key of `tensors`. `metadata` (str -> str) goes into `__metadata__`.

    The file is written to a temporary name in the same folder, fsynced, renamed over `path`,
    and the folder fsynced: a crash leaves the old file or the new one, never half of one.
    Raises `CheckpointError` for bad names, dtypes or metadata, `OSError` for I/O failures.
    """
    header, arrays = _plan(tensors, aliases, metadata)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # A hidden name beside the target, so the rename stays on one file system; os.open (not
    # mkstemp) so the file gets the usual umask permissions.
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            # The checksum has a fixed width: write a placeholder, stream the data while
            # checksumming it, then overwrite the header in place.
            placeholder = _header_bytes(header, checksum=0)
            file.write(placeholder)
            checksum = _write_and_checksum(file, arrays)
            file.flush()
            os.pwrite(file.fileno(), _with_checksum(placeholder, checksum), 0)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def dumps(
    tensors: Mapping[str, Any],
    *,
    aliases: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes `save` would write, as one `bytes` object. Raises `CheckpointError` like `save`."""
    header, arrays = _plan(tensors, aliases, metadata)
    checksum = 0
    for array in arrays:
        checksum = zlib.crc32(_bytes_of(array), checksum)
    return b"".join([_header_bytes(header, checksum), *(_bytes_of(array) for array in arrays)])


def _plan(
    tensors: Mapping[str, Any],
    aliases: Mapping[str, str] | None,
    metadata: Mapping[str, str] | None,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Validate the inputs; return the header (checksum to fill in) and the arrays in data order."""
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
    user_metadata = _checked_metadata(metadata)

    # Widest items first keeps every tensor aligned within the aligned data section.
    layout = sorted(stored, key=lambda name: -stored[name].dtype.itemsize)
    entries: dict[str, Any] = {}
    offset = 0
    for name in layout:
        array = stored[name]
        entries[name] = {
            "dtype": _LABEL_OF_DTYPE[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    codec_metadata = {ORDER_KEY: json.dumps(order), ALIASES_KEY: json.dumps(ties)}
    header = {"__metadata__": {**user_metadata, **codec_metadata}, **entries}
    return header, [stored[name] for name in layout]


def _header_bytes(header: dict[str, Any], checksum: int) -> bytes:
    """The length prefix and the padded JSON header, with the data section's checksum."""
    header["__metadata__"][CHECKSUM_KEY] = f"crc32:{checksum:08x}"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % _HEADER_ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


def _with_checksum(placeholder: bytes, checksum: int) -> bytes:
    """`placeholder` (a header written with checksum 0) with `checksum` in its place.

    Quotes inside JSON strings are escaped, so the quoted key-value pair occurs only once."""
    empty = f'"{CHECKSUM_KEY}":"crc32:{0:08x}"'.encode()
    return placeholder.replace(empty, f'"{CHECKSUM_KEY}":"crc32:{checksum:08x}"'.encode(), 1)


_CHUNK = 8 << 20  # big enough to amortise a system call, small enough to overlap I/O and CRC


def _write_and_checksum(file: Any, arrays: list[np.ndarray]) -> int:
    """Write the arrays' bytes, checksumming each block on a thread while it is being written."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        checksum = pool.submit(int, 0)
        for chunk in _blocks(map(_bytes_of, arrays)):
            checksum = pool.submit(zlib.crc32, chunk, checksum.result())
            file.write(chunk)
        return checksum.result()


def _blocks(pieces: Iterable[memoryview]) -> Iterator[memoryview | bytes]:
    """The bytes of `pieces` in order, as blocks of about `_CHUNK` bytes.

    A large piece is sliced (no copy); runs of small ones are joined into one block, because
    handing the thread and the file one tiny piece at a time costs far more than the copy.
    """
    pending: list[memoryview] = []
    pending_bytes = 0
    for data in pieces:
        if len(data) >= _CHUNK // 2:
            if pending:
                yield b"".join(pending)
                pending, pending_bytes = [], 0
            for start in range(0, len(data), _CHUNK):
                yield data[start:start + _CHUNK]
            continue
        pending.append(data)
        pending_bytes += len(data)
        if pending_bytes >= _CHUNK:
            yield b"".join(pending)
            pending, pending_bytes = [], 0
    if pending:
        yield b"".join(pending)


def _little_endian_contiguous(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype in _LABEL_OF_DTYPE and array.flags.c_contiguous:
        return array  # the common case, checked first because it is cheap
    if array.dtype.name not in _LABELS:
        raise CheckpointError(
            f"tensor {name!r} has dtype {array.dtype}, which safetensors cannot store; "
            f"supported: {', '.join(sorted(_LABELS))}"
        )
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


def _bytes_of(array: np.ndarray) -> memoryview:
    """The array's bytes without a copy (the array is C-contiguous)."""
    if array.size == 0:
        return memoryview(b"")  # a view with a zero in its shape cannot be cast
    return memoryview(array).cast("B")


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable; some platforms cannot open a folder, which is harmless.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---- reading -----------------------------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a safetensors file; the arrays are writable views of one buffer.

    Raises `CheckpointError` for a malformed file, `OSError` when it cannot be read.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        # np.empty leaves the pages untouched until the read fills them (bytearray zeroes them).
        view = memoryview(np.empty(size, dtype=np.uint8))
        _read_exactly(file, view[:min(size, 8)])
        data_start = 8 + _header_length(view)
        _read_exactly(file, view[8:data_start])
        body_checksum = _read_and_checksum(file, view[data_start:])
    return _decode(view, body_checksum)


def _read_and_checksum(file: Any, body: memoryview) -> int:
    """Fill `body` from `file`, checksumming each chunk on a thread while the next one is read."""
    if len(body) <= _CHUNK:
        _read_exactly(file, body)
        return zlib.crc32(body)
    with ThreadPoolExecutor(max_workers=1) as pool:
        checksum = pool.submit(int, 0)
        for start in range(0, len(body), _CHUNK):
            chunk = body[start:start + _CHUNK]
            _read_exactly(file, chunk)
            checksum = pool.submit(zlib.crc32, chunk, checksum.result())
        return checksum.result()


def _read_exactly(file: Any, target: memoryview) -> None:
    if file.readinto(target) != len(target):
        raise CheckpointError(f"{file.name!r} is shorter than its header says (or was truncated)")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (the codec's keys included), reading only its
    header. Raises `CheckpointError` for a malformed header, `OSError` when it cannot be read.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        prefix = file.read(8)
        length = _header_length(memoryview(prefix), size)
        text = file.read(length)
    if len(text) != length:
        raise CheckpointError(f"{os.fspath(path)!r} was truncated while being read")
    return _checked_stored_metadata(_parse_header(memoryview(text)).get("__metadata__", {}))


def loads(data: bytes | bytearray | memoryview) -> Checkpoint:
    """Validate safetensors bytes and return their `Checkpoint` without copying tensor data.

    The arrays are views of `data` (writable when `data` is). Raises `CheckpointError` naming
    the first defect found; nothing is returned from bytes that fail any check.
    """
    return _decode(memoryview(data).cast("B"), body_checksum=None)


def _decode(view: memoryview, body_checksum: int | None) -> Checkpoint:
    """`loads` on `view`; `body_checksum` is the data section's crc32 when already computed."""
    data_start = 8 + _header_length(view)
    header = _parse_header(view[8:data_start])
    raw_metadata = header.pop("__metadata__", {})
    metadata = _checked_stored_metadata(raw_metadata)
    entries = dict(_checked_entries(header))
    body = view[data_start:]
    _check_layout(entries, len(body))
    checksum = metadata.pop(CHECKSUM_KEY, None)
    if checksum is not None:
        _verify_checksum(checksum, body, body_checksum)
    aliases = _stored_aliases(metadata.pop(ALIASES_KEY, None), entries)
    order = _stored_order(metadata.pop(ORDER_KEY, None), entries, aliases)

    stored = {
        name: np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        for name, (dtype, shape, begin, end) in entries.items()
    }
    tensors = {name: stored[aliases.get(name, name)] for name in order}
    return Checkpoint(tensors=tensors, aliases=aliases, metadata=metadata)


_Entry = tuple[np.dtype, tuple[int, ...], int, int]


def _header_length(view: memoryview, total: int | None = None) -> int:
    """The header's length from the first 8 bytes of `view`, checked against the input's
    `total` length (by default `len(view)`)."""
    total = len(view) if total is None else total
    if total < 8 or len(view) < 8:
        raise CheckpointError(f"not a safetensors file: {total} bytes, fewer than 8")
    (length,) = struct.unpack("<Q", view[:8])
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"header length {length} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )
    if 8 + length > total:
        raise CheckpointError(
            f"header length {length} runs past the end of the {total}-byte input"
        )
    return length


def _parse_header(text: memoryview) -> dict[str, Any]:
    try:
        header = json.loads(bytes(text).decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"the header is not valid UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"the header must be a JSON object, got {type(header).__name__}")
    return header


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python's JSON keeps the last of duplicate keys; another reader may keep the first.
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise CheckpointError(f"the header names {duplicate!r} more than once")
    return dict(pairs)


def _checked_stored_metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in raw.items()
    ):
        raise CheckpointError("'__metadata__' must be a JSON object of strings to strings")
    return dict(raw)


def _checked_entries(header: dict[str, Any]) -> Iterator[tuple[str, _Entry]]:
    for name, info in header.items():
        validate_name(name)
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(
                f"tensor {name!r} must be described by exactly dtype, shape and data_offsets"
            )
        label, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if label not in _DTYPES:
            raise CheckpointError(
                f"tensor {name!r} has dtype {label!r}; supported: {', '.join(_DTYPES)}"
            )
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_DIMENSIONS
            or not all(_is_count(dim) for dim in shape)
        ):
            raise CheckpointError(f"tensor {name!r} has invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(offset) for offset in offsets)
            or offsets[0] > offsets[1]
        ):
            raise CheckpointError(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        dtype = _DTYPES[label]
        begin, end = offsets
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            raise CheckpointError(
                f"tensor {name!r} of shape {tuple(shape)} and dtype {label} needs {expected} "
                f"bytes but its data_offsets span {end - begin}"
            )
        yield name, (dtype, tuple(shape), begin, end)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_layout(entries: dict[str, _Entry], body_length: int) -> None:
    """Tensors must tile the data section exactly: no gap, no overlap, nothing left over."""
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != position:
            raise CheckpointError(
                f"tensor {name!r} starts at byte {begin} of the data, expected {position} "
                "(tensors must be contiguous and must not overlap)"
            )
        position = end
    if position != body_length:
        raise CheckpointError(
            f"the tensors cover {position} bytes but the data section holds {body_length}"
        )


def _verify_checksum(recorded: str, body: memoryview, body_checksum: int | None) -> None:
    if not recorded.startswith("crc32:"):
        raise CheckpointError(f"unknown checksum {recorded!r}; expected 'crc32:<hex>'")
    # The writer checksums tensors in data order, which the layout check made contiguous.
    if body_checksum is None:
        body_checksum = zlib.crc32(body)
    actual = f"crc32:{body_checksum:08x}"
    if recorded != actual:
        raise CheckpointError(
            f"checksum mismatch: the file records {recorded} but its data hashes to {actual}; "
            "the file is corrupt"
        )


def _stored_aliases(raw: str | None, entries: dict[str, _Entry]) -> dict[str, str]:
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
    raw: str | None, entries: dict[str, _Entry], aliases: dict[str, str]
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
