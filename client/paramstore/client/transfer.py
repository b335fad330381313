"""Moving parameters over the wire: local ParameterDicts to push streams, pull streams to arrays.

A tensor travels as raw little-endian bytes in chunks of `CHUNK_BYTES`; a tied tensor travels
once (the other names go as aliases).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from paramstore.client.errors import InvalidArgument, ParamstoreError
from paramstore.dtypes import numpy_dtype
from paramstore.proto import chunks, wire
from paramstore.proto.v1 import paramstore_pb2 as pb

CHUNK_BYTES = chunks.CHUNK_BYTES
PROGRESS_MIN_BYTES = 64 << 20  # smaller transfers are quick: no bar


@dataclass
class Outgoing:
    """One local parameter ready to send."""

    spec: pb.ParameterSpec
    data: np.ndarray | None


def describe(params: Any) -> tuple[str, list[Outgoing]]:
    """The prefix and parameters of a local ParameterDict (or a mapping of name -> array).

    The same Parameter object under two names is a tie: the later names become aliases.
    Raises `InvalidArgument` for a dtype the wire cannot carry.
    """
    prefix = getattr(params, "prefix", "") or ""
    first_name_of: dict[int, str] = {}
    outgoing = []
    for name, param in params.items():
        if id(param) in first_name_of:
            outgoing.append(Outgoing(_alias_spec(name, first_name_of[id(param)]), None))
            continue
        first_name_of[id(param)] = name
        outgoing.append(_outgoing(name, param))
    for alias, target in _recorded_ties(params).items():
        if alias not in first_name_of.values():
            outgoing.append(Outgoing(_alias_spec(alias, target), None))
    return prefix, outgoing


def _recorded_ties(params: Any) -> Mapping[str, str]:
    ties = getattr(params, "aliases", None)
    return ties() if callable(ties) else (ties or {})


def _alias_spec(name: str, target: str) -> pb.ParameterSpec:
    return pb.ParameterSpec(name=name, alias_of=target, dtype="float32", kind="Parameter")


def _outgoing(name: str, param: Any) -> Outgoing:
    if _is_parameter(param):
        data = local_data(param)
        shape = param.shape
        label = str(param.dtype)
        kind = type(param).__name__ if type(param).__name__ == "Constant" else "Parameter"
        declared = param.dtype
    else:  # a bare array
        data = np.asarray(param)
        shape, label, kind, declared = data.shape, _dtype_name(data.dtype), "Parameter", data.dtype
    if data is not None:
        data = _little_endian_contiguous(data)
        shape, dtype = data.shape, _dtype_name(data.dtype)
    else:
        try:
            dtype = _dtype_name(np.dtype(declared))
        except TypeError:
            raise InvalidArgument(f"parameter {name!r} has dtype {declared!r}, not a NumPy one") \
                from None
        shape = None if shape is None else tuple(int(dim) for dim in shape)
    return Outgoing(_spec(name, shape, dtype, label, kind, data is not None), data)


def _spec(name: str, shape: tuple[int, ...] | None, dtype: str, label: str, kind: str,
          has_data: bool) -> pb.ParameterSpec:
    """A ParameterSpec, parsed from its name's field and a cached serialization of the rest:
    quicker than building a message field by field, and a net's parameters share a few."""
    return pb.ParameterSpec.FromString(
        chunks.field(_NAME_FIELD, name.encode()) + _described(shape, dtype, label, kind, has_data))


_NAME_FIELD = pb.ParameterSpec.DESCRIPTOR.fields_by_name["name"].number


@functools.lru_cache(maxsize=1024)
def _described(shape: tuple[int, ...] | None, dtype: str, label: str, kind: str,
               has_data: bool) -> bytes:
    return pb.ParameterSpec(shape=shape or (), shape_unknown=shape is None, dtype=dtype,
                            dtype_label=label, kind=kind, has_data=has_data).SerializeToString()


def _little_endian_contiguous(data: np.ndarray) -> np.ndarray:
    if data.flags.c_contiguous and data.dtype.byteorder != ">":
        return data  # the common case, checked first because it is cheap
    return np.asarray(data, dtype=data.dtype.newbyteorder("<"), order="C")


@functools.cache
def _dtype_name(dtype: np.dtype) -> str:
    # NumPy works `dtype.name` out anew on every call: slow enough to dominate many tiny arrays.
    return dtype.name


def _is_parameter(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return False  # the cheap test first: a failed hasattr raises inside
    return hasattr(value, "name") and hasattr(value, "shape") and hasattr(value, "dtype") \
        and callable(getattr(value, "data", None))


def local_data(param: Any) -> np.ndarray | None:
    """A local parameter's data as a NumPy array (no copy), or None when it has none yet."""
    try:
        data = param.data()
    except RuntimeError:  # not initialized, or its initialization is deferred
        return None
    return np.asarray(data)


def push_requests(
    begin: pb.PushBegin, outgoing: list[Outgoing], bar: Any, batches: bool = True,
    count: int | None = None,
) -> Iterator[pb.PushRequest | bytes]:
    """The push stream: PushBegin, then each parameter's spec and chunks (pre-serialized),
    small parameters in batches (see `paramstore.proto.chunks`). PushBegin announces the
    parameter count (`count`, when the specs are not sent: `PushBegin.same_parameters`), so the
    server can tell a finished stream from one cut short. Without `batches` every parameter
    goes as its own spec and chunks."""
    begin.parameter_count = len(outgoing) if count is None else count
    yield pb.PushRequest(begin=begin)
    yield from chunks.parameter_messages(
        ((item.spec.SerializeToString(), item.data) for item in outgoing), batches,
        sent=bar.update,
    )


def outgoing_bytes(outgoing: Iterable[Outgoing]) -> int:
    return sum(item.data.nbytes for item in outgoing if item.data is not None)


@dataclass
class Received:
    """One pulled parameter: its spec and its data (None when it has none)."""

    spec: pb.ParameterSpec
    data: np.ndarray | None


def receive(
    replies: Iterable[pb.PullResponse], description: str, progress: bool | None,
    count: int | None = None,
    destination: Callable[[pb.ParameterSpec], np.ndarray | None] | None = None,
) -> tuple[pb.PullBegin, list[Received]]:
    """Read a whole pull stream, or one step's `count` parameters (`wire.read_pull`); an alias
    sent without data gets its target's array. Each parameter's bytes go into
    `destination(spec)` (an array of its shape and little-endian dtype, C-contiguous) or,
    where that is None, a new array."""
    received: list[Received] = []
    arrays: dict[str, np.ndarray] = {}

    def start(spec: pb.ParameterSpec, whole: memoryview | None
              ) -> Callable[[bytes], None] | None:
        data = None
        if spec.has_data:
            data = destination(spec) if destination is not None else None
            if data is None:
                data = np.empty(tuple(spec.shape),
                                dtype=numpy_dtype(spec.dtype).newbyteorder("<"))
            arrays[spec.alias_of or spec.name] = data
        elif spec.alias_of:
            data = arrays.get(spec.alias_of)
        received.append(Received(spec, data))
        if not spec.has_data or data is None:
            return None
        write = _filler(data)
        if whole is None:
            return write
        write(whole)
        return None

    with contextlib.ExitStack() as stack:
        def bar(begin: pb.PullBegin) -> Callable[[int], None]:
            return stack.enter_context(
                progress_bar(begin.data_bytes, description, progress)).update

        try:
            begin = wire.read_pull(replies, start, bar, count)
        except wire.StreamError as error:
            raise ParamstoreError(str(error)) from None
    return begin, received


def _filler(array: np.ndarray) -> Callable[[bytes | memoryview], None]:
    """Writes consecutive chunks into `array`'s bytes (`wire.read_pull` checks their sizes)."""
    flat = array.reshape(-1).view(np.uint8)
    filled = 0

    def write(chunk: bytes | memoryview) -> None:
        nonlocal filled
        flat[filled:filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
        filled += len(chunk)

    return write


class _NoBar:
    def update(self, count: int) -> None:
        pass


def progress_bar(total: int, description: str, enabled: bool | None) -> Any:
    """A tqdm bar for a transfer of `total` bytes, or a silent stand-in.

    `enabled` None: a bar only on a terminal and for transfers of at least 64 MiB."""
    if enabled is None:
        enabled = total >= PROGRESS_MIN_BYTES and sys.stderr.isatty()
    if not enabled:
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False)
