"""Parameters as a push declares them: each spec checked into a `ParameterInfo`, and a
`ParameterBatch` taken as one unit.

A batch is one message holding many small parameters, so its cost is the loop over its specs:
that loop does only what each needs (its description, its admission to the budget, a view of
its bytes), and everything a batch can do once is done once (one accounting call, one buffer).
A description depends on its spec alone, so it is worked out once per serialized spec: a
re-pushed parameter costs a lookup, and keeps the very `ParameterInfo` the store holds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server import validation
from paramstore.server.errors import InvalidArgument
from paramstore.server.limits import Budget
from paramstore.server.stores import Incoming, ParameterInfo, validated_info


def declared_info(spec: Any, budget: Budget, max_tensor_bytes: int) -> ParameterInfo:
    """The parameter a `ParameterSpec` declares, checked and admitted to `budget`. Raises
    `InvalidArgument` (a bad name, shape, dtype, label or kind, or data on a parameter that
    cannot carry any) and `ResourceExhausted` (a limit)."""
    info, _ = described(spec.SerializeToString(), max_tensor_bytes)
    budget.admit(info)
    return info


# Bounded: an entry is its key's bytes and a ParameterInfo, which the stores share.
@functools.lru_cache(maxsize=1 << 17)
def described(serialized: bytes, max_tensor_bytes: int) -> tuple[ParameterInfo, bool]:
    """The checked description of a serialized `ParameterSpec`, and whether data follows it
    (raises as `declared_info`, and caches no error)."""
    spec = pb.ParameterSpec.FromString(serialized)
    shape = None if spec.shape_unknown else tuple(spec.shape)
    info = validated_info(spec.name, shape, spec.dtype, spec.dtype_label or spec.dtype,
                          spec.kind or "Parameter", spec.alias_of, max_tensor_bytes)
    if spec.has_data and (shape is None or spec.alias_of):
        raise InvalidArgument(
            f"parameter {info.name!r} cannot carry data: "
            + ("it is an alias" if spec.alias_of else "its shape is unknown")
        )
    return info, spec.has_data


def batch_items(batch: Any, budget: Budget, take: Callable[[int, str], None],
                max_tensor_bytes: int) -> list[Incoming]:
    """The parameters of a `ParameterBatch` with their data: read-only views of the batch's
    bytes, each parameter's in turn; `take(size, what)` accounts for those bytes. Raises what
    `declared_info` raises, and `InvalidArgument` when the bytes do not add up to the specs'.

    A stored view keeps its batch's bytes (under 1 MiB) until every parameter of the batch is
    written again: a copy per parameter would cost a fifth of a push of small ones."""
    specs = batch.parameters
    data = batch.data
    take(len(data), f"a batch of {len(specs)} parameters")
    buffer = np.frombuffer(data, np.uint8)
    little_endian = validation.LITTLE_ENDIAN
    items = []
    offset = 0
    for spec in specs:
        info, has_data = described(spec.SerializeToString(), max_tensor_bytes)
        budget.admit(info)
        if not has_data:
            items.append(Incoming(info))
            continue
        end = offset + info.nbytes
        if end > len(buffer):
            raise InvalidArgument(f"parameter {info.name!r} received {len(buffer) - offset} of "
                                  f"its {info.nbytes} bytes")
        array = buffer[offset:end].view(little_endian[info.dtype]).reshape(info.shape or ())
        items.append(Incoming(info, array))
        offset = end
    if offset != len(buffer):
        raise InvalidArgument(f"a batch of {len(specs)} parameters carried {len(buffer)} bytes, "
                              f"{len(buffer) - offset} more than its parameters hold")
    return items
