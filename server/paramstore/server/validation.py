"""Checks on every value a client sends: names, shapes, dtypes, labels and selection regexes.

Each check raises `InvalidArgument` naming the value and the rule it breaks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import ml_dtypes  # noqa: F401  np.dtype("bfloat16") in the server: its import paid once, at start
import numpy as np
import re2

from paramstore import checkpoint
from paramstore.server.errors import InvalidArgument, ResourceExhausted

MAX_STORE_NAME_LENGTH = 128
MAX_DIMENSIONS = checkpoint.MAX_DIMENSIONS
MAX_LABEL_LENGTH = 200
MAX_SELECT_LENGTH = 4096
MAX_METADATA_BYTES = 64 << 10  # a snapshot's metadata: listings carry it for every snapshot
MAX_METADATA_KEY_LENGTH = 256
MAX_PREFIX_LENGTH = 1024
MAX_TAGS = 256  # per store: each is a file, committed under the store's lock
MAX_VERSION = 2**63 - 1  # versions and steps fit an int64 with room to count on
DTYPES = frozenset(
    ["bool", "uint8", "int8", "uint16", "int16", "float16", "bfloat16", "uint32", "int32",
     "float32", "uint64", "int64", "float64"]
)
# Each dtype as its data travels and is kept (little-endian), and its size: looked up per
# parameter, so computed once here.
LITTLE_ENDIAN = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}
ITEMSIZES = {name: dtype.itemsize for name, dtype in LITTLE_ENDIAN.items()}
KINDS = frozenset(["Parameter", "Constant"])
# Store names and snapshot ids become file and folder names: a conservative alphabet, no
# leading dot (hidden files, "." and ".."), so no path separators, NUL or traversal.
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_C0_CONTROL = re.compile("[\x00-\x1f]")
_INT_ONLY = {int}  # a shape's dimensions: not bools, nor any other int-like type


def store_name(name: str) -> str:
    """Return `name` if it can name a store; raise `InvalidArgument` otherwise."""
    return _file_name("store name", name)


def snapshot_id(name: str) -> str:
    """Return `name` if it can be a snapshot id; raise `InvalidArgument` otherwise."""
    return _file_name("snapshot id", name)


def tag_name(name: str) -> str:
    """Return `name` if it can name a tag: a file name that cannot be read as an id (not all
    digits, not "latest")."""
    _file_name("tag", name)
    if name.isdigit() or name == "latest":
        raise InvalidArgument(f"invalid tag {name!r}: a tag may not be all digits or 'latest', "
                              "which name snapshots by id")
    return name


def _file_name(what: str, name: str) -> str:
    if not 0 < len(name) <= MAX_STORE_NAME_LENGTH or not _FILE_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid {what} {name[:MAX_STORE_NAME_LENGTH]!r}: use 1 to "
            f"{MAX_STORE_NAME_LENGTH} characters from A-Z a-z 0-9 . _ - , not starting with '.'"
        )
    return name


def parameter_name(name: str) -> str:
    """Return `name` if it can name a parameter (non-empty, bounded, no control characters)."""
    try:
        return checkpoint.validate_name(name)
    except checkpoint.CheckpointError as error:
        raise InvalidArgument(str(error).replace("tensor name", "parameter name")) from None


def distinct(what: str, names: Sequence[str]) -> None:
    """Raise `InvalidArgument` naming the first name given twice in `names`, in linear time (a
    request may carry hundreds of thousands)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidArgument(f"{what} names {name!r} more than once")
        seen.add(name)


def dtype(name: str) -> str:
    """Return `name` if it is a supported element type."""
    if not isinstance(name, str) or name not in DTYPES:
        raise InvalidArgument(f"unsupported dtype {name!r}; supported: {', '.join(sorted(DTYPES))}")
    return name


def shape(name: str, dims: Sequence[int], itemsize: int, max_bytes: int) -> tuple[int, ...]:
    """Return `dims` as a tuple if `name` may have this shape within `max_bytes` of data;
    over that size limit, raise `ResourceExhausted`."""
    if not isinstance(dims, (list, tuple)) or not {*map(type, dims)} <= _INT_ONLY \
            or (dims and min(dims) < 0):
        raise InvalidArgument(f"parameter {name!r} has an invalid shape {dims!r}")
    if len(dims) > MAX_DIMENSIONS:
        raise InvalidArgument(
            f"parameter {name!r} has {len(dims)} dimensions, more than {MAX_DIMENSIONS}"
        )
    size = math.prod(dims) * itemsize
    if size > max_bytes:
        raise ResourceExhausted(
            f"parameter {name!r} of shape {tuple(dims)} needs {size} bytes, more than the "
            f"{max_bytes}-byte limit per tensor"
        )
    return tuple(dims)


def label(name: str, text: str) -> str:
    """Return a dtype label as printed (`float32`, `<class 'numpy.float32'>`) if it is sane."""
    if (
        not isinstance(text, str)
        or len(text) > MAX_LABEL_LENGTH
        or _C0_CONTROL.search(text)
    ):
        raise InvalidArgument(f"parameter {name!r} has an invalid dtype label {text[:40]!r}")
    return text


def kind(name: str, text: str) -> str:
    """Return "Parameter" or "Constant"."""
    if not isinstance(text, str) or text not in KINDS:
        raise InvalidArgument(
            f"parameter {name!r} has kind {text!r}; expected 'Parameter' or 'Constant'"
        )
    return text


def printable(what: str, text: str) -> str:
    """Return `text` if it holds no control characters (C0, DEL, C1): nothing that a terminal
    would take for an escape sequence when a listing prints it."""
    if _CONTROL.search(text):
        raise InvalidArgument(f"{what} {text[:40]!r} holds control characters")
    return text


def prefix(text: str) -> str:
    """Return a store prefix if it is printable and at most `MAX_PREFIX_LENGTH` characters."""
    if len(text) > MAX_PREFIX_LENGTH:
        raise InvalidArgument(f"prefix {text[:40]!r}... has {len(text)} characters, more than "
                              f"{MAX_PREFIX_LENGTH}")
    return printable("prefix", text)


def version(number: int) -> int:
    """Return a store version if it lies in [0, 2**63)."""
    if not 0 <= number <= MAX_VERSION:
        raise InvalidArgument(f"version {number} is outside [0, 2**63)")
    return number


def metadata(entries: dict[str, str]) -> dict[str, str]:
    """Return snapshot metadata if its keys are free (not `paramstore.*`), keys and values
    printable and its size bounded."""
    total = 0
    for key, value in entries.items():
        if not key or key.startswith("paramstore.") or key == "__metadata__":
            raise InvalidArgument(
                f"metadata key {key!r} is reserved; use a non-empty key not starting with "
                "'paramstore.'"
            )
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise InvalidArgument(f"metadata key {key[:40]!r}... is longer than "
                                  f"{MAX_METADATA_KEY_LENGTH} characters")
        printable("metadata key", key)
        printable(f"metadata value of {key!r}", value)
        total += len(key.encode()) + len(value.encode())
    if total > MAX_METADATA_BYTES:
        raise InvalidArgument(f"metadata holds {total} bytes, more than {MAX_METADATA_BYTES}")
    return dict(entries)


def snapshot_step(step: int, no_step: int) -> int:
    """Return a snapshot step if it lies in [0, 2**63) or is `no_step` (the wire's "none")."""
    if step != no_step and not 0 <= step < 2**63:
        raise InvalidArgument(f"snapshot step {step} is outside [0, 2**63)")
    return step


def select(pattern: str) -> Callable[[str], bool]:
    """A predicate true for names that `pattern` matches at their start (Gluon's `re.match`).

    The regex runs on RE2, which takes time linear in the name whatever the pattern. An empty
    pattern selects every name. Raises `InvalidArgument` for a pattern RE2 cannot compile.
    """
    if not pattern:
        return lambda name: True
    if len(pattern) > MAX_SELECT_LENGTH:
        raise InvalidArgument(
            f"select regex is {len(pattern)} characters long, more than {MAX_SELECT_LENGTH}"
        )
    options = re2.Options()
    options.log_errors = False
    # Only whether a name matches counts: tracking groups would leave RE2's DFA for a matcher
    # 10^4 times slower on a pattern of many groups (80 ms a name for 409 of them).
    options.never_capture = True
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as error:
        message = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) \
            else str(error)
        raise InvalidArgument(f"invalid select regex {pattern!r}: {message}") from None
    return lambda name: compiled.match(name) is not None
