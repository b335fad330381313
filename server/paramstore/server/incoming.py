"""Parameters as a push declares them: each spec checked into a `ParameterInfo`, and a
`ParameterBatch` taken as one unit.

A batch is one message holding many small parameters, so its cost is the loop over its specs:
that loop does only what each spec needs (its checks, its admission to the budget, a view of its
bytes), and everything a batch can do once is done once (one accounting call, one buffer). A
re-pushed parameter whose description is the stored one keeps the stored `ParameterInfo`: it
passed every check when it was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from paramstore.server import validation
from paramstore.server.errors import InvalidArgument
from paramstore.server.limits import Budget
from paramstore.server.stores import Incoming, ParameterInfo, validated_info


def declared_info(spec: Any, budget: Budget, max_tensor_bytes: int) -> ParameterInfo:
    """The parameter a `ParameterSpec` declares, checked and admitted to `budget`. Raises
    `InvalidArgument` (a bad name, shape, dtype, label or kind, or data on a parameter that
    cannot carry any) and `ResourceExhausted` (a limit)."""
    name, alias_of, has_data = spec.name, spec.alias_of, spec.has_data
    shape = None if spec.shape_unknown else tuple(spec.shape)
    dtype, label, kind = spec.dtype, spec.dtype_label or spec.dtype, spec.kind or "Parameter"
    stored = budget.state.parameters.get(name)
    if stored is not None and not alias_of and stored.alias_of is None and \
            stored.shape == shape and stored.dtype == dtype and \
            stored.dtype_label == label and stored.kind == kind:
        info = stored  # the common re-push: the stored description, checked when it was stored
    else:
        info = validated_info(name, shape, dtype, label, kind, alias_of, max_tensor_bytes)
    if has_data and (shape is None or alias_of):
        raise InvalidArgument(
            f"parameter {name!r} cannot carry data: "
            + ("it is an alias" if alias_of else "its shape is unknown")
        )
    budget.admit(info)
    return info


def batch_items(batch: Any, budget: Budget, take: Callable[[int, str], None],
                max_tensor_bytes: int) -> list[Incoming]:
    """The parameters of a `ParameterBatch` with their data: read-only views of the batch's
    bytes, each parameter's in turn; `take(size, what)` accounts for those bytes. Raises what
    `declared_info` raises, and `InvalidArgument` when the bytes do not add up to the specs'."""
    specs = batch.parameters
    data = batch.data
    take(len(data), f"a batch of {len(specs)} parameters")
    buffer = np.frombuffer(data, np.uint8)
    little_endian = validation.LITTLE_ENDIAN
    items = []
    offset = 0
    for spec in specs:
        info = declared_info(spec, budget, max_tensor_bytes)
        if not spec.has_data:
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
