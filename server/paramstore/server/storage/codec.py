"""A store's state as a safetensors checkpoint, and back.

Besides the codec's own keys, `__metadata__` holds under `paramstore.*` the store's name, prefix,
version, the step and time, and every parameter's listing in store order (dtype label, kind, ties,
and the shape of parameters that hold no data; a bare name for a Parameter holding data whose
label is its dtype's name). Other keys are the caller's. A file from elsewhere (no listing)
reads as its tensors in file order.

A delta snapshot's file names its base snapshot (`paramstore.base`) and holds only the tensors
that changed since it; the listing marks each parameter whose data is the base's (`"base"`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from paramstore import checkpoint
from paramstore.server import validation
from paramstore.server.errors import InvalidArgument
from paramstore.server.stores import ParameterInfo, StoreState, validated_info

_log = logging.getLogger(__name__)

STORE_KEY = "paramstore.store"
PREFIX_KEY = "paramstore.prefix"
STEP_KEY = "paramstore.step"
CREATED_KEY = "paramstore.created"
VERSION_KEY = "paramstore.version"
PARAMETERS_KEY = "paramstore.parameters"
BASE_KEY = "paramstore.base"
NO_STEP = -1
# `dtype.name` is slow enough to dominate a store of many tiny tensors.
_DTYPE_NAMES = {np.dtype(name): name for name in validation.DTYPES}


# ---- a store state <-> a checkpoint ------------------------------------------------------------


def encode(
    store: str,
    state: StoreState,
    step: int,
    metadata: Mapping[str, str],
    base: tuple[str, Collection[str]] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """The codec's arguments (tensors, aliases, metadata) that describe `state`; with `base`
    (a snapshot id and the stored names whose data is that snapshot's), a delta file."""
    in_base = set(base[1]) if base else set()
    # Views: two names that share an array (after an untie) must not look like a tie to the
    # codec, which takes one object under two names for one.
    tensors = {name: array.view() for name, array in state.data.items() if name not in in_base}
    ties = state.ties()
    aliases = {alias: target for alias, target in ties.items() if target in tensors}
    listing = [_listing_entry(info, has_data=info.name in state.data,
                              in_base=info.name in in_base)
               for info in state.parameters.values()]
    file_metadata = {
        **metadata,
        **({BASE_KEY: base[0]} if base else {}),
        STORE_KEY: store,
        PREFIX_KEY: state.prefix,
        STEP_KEY: str(step),
        CREATED_KEY: str(time.time_ns()),
        VERSION_KEY: str(state.version),
        PARAMETERS_KEY: json.dumps(listing, separators=(",", ":")),
    }
    return tensors, aliases, file_metadata


def _listing_entry(
    info: ParameterInfo, *, has_data: bool, in_base: bool
) -> str | dict[str, Any]:
    """The parameter's entry; the common case (a Parameter holding data in this file, printed
    with its dtype's own name) is its name alone, which keeps the header of a large store
    small."""
    if has_data and not in_base and not info.alias_of and info.kind == "Parameter" \
            and info.dtype_label == info.dtype:
        return info.name
    entry: dict[str, Any] = {"name": info.name, "label": info.dtype_label, "kind": info.kind}
    if info.alias_of:
        entry["alias_of"] = info.alias_of
    elif not has_data or in_base:
        entry["shape"] = None if info.shape is None else list(info.shape)
        entry["dtype"] = info.dtype
    if in_base:
        entry["base"] = True
    return entry


def decode(
    loaded: checkpoint.Checkpoint,
    max_bytes: int = 1 << 62,
    select: Callable[[str], bool] | None = None,
    base: StoreState | None = None,
) -> StoreState:
    """The store state a checkpoint describes; a file from elsewhere (no paramstore listing)
    gives its tensors in file order with plain dtype labels. `select`: only the parameters it
    keeps and the targets of the aliases it keeps (`loaded` read with the same `select`).
    `base`: the state of the snapshot a delta file names, whose data it takes where the
    listing says so. Raises `InvalidArgument`."""
    stored = loaded.stored()
    if loaded.metadata.get(BASE_KEY) and base is None:
        raise InvalidArgument(f"the file is a delta of snapshot {loaded.metadata[BASE_KEY]!r} "
                              "and cannot be read without it; export it to get a full file")
    raw = loaded.metadata.get(PARAMETERS_KEY)
    listing = _parsed_listing(raw) if raw is not None else [
        {"name": name, "alias_of": loaded.aliases.get(name)} for name in loaded.tensors
    ]
    if select is not None:
        kept = {entry["name"] for entry in listing if select(entry["name"])}
        kept |= {entry["alias_of"] for entry in listing
                 if entry["name"] in kept and entry.get("alias_of")}
        listing = [entry for entry in listing if entry["name"] in kept]
    parameters: dict[str, ParameterInfo] = {}
    for entry in listing:
        name = entry["name"]
        if name in parameters:
            raise InvalidArgument(f"the file lists parameter {name!r} twice")
        array = stored.get(name)
        if entry.get("base") and base is not None:
            array = stored[name] = _from_base(base, name, entry)
        if array is not None:
            shape, dtype = array.shape, _DTYPE_NAMES.get(array.dtype) or array.dtype.name
        elif entry.get("alias_of"):
            shape, dtype = None, "float32"  # replaced by the target's below
        else:
            shape, dtype = entry.get("shape"), entry.get("dtype", "")
        parameters[name] = validated_info(
            name, shape, dtype, entry.get("label", dtype), entry.get("kind", "Parameter"),
            entry.get("alias_of"), max_bytes,
        )
    if set(stored) - set(parameters):
        raise InvalidArgument(
            f"the file's listing misses tensors {sorted(set(stored) - set(parameters))[:5]}"
        )
    for name, info in parameters.items():
        if info.alias_of:
            target = parameters.get(info.alias_of)
            if target is None or target.alias_of:
                raise InvalidArgument(f"alias {name!r} names {info.alias_of!r}, not a parameter")
            parameters[name] = ParameterInfo(
                name, target.shape, target.dtype, target.dtype_label, target.kind, info.alias_of
            )
    for array in stored.values():
        array.flags.writeable = False
    prefix = loaded.metadata.get(PREFIX_KEY, "")
    version = _int(loaded.metadata.get(VERSION_KEY), 0)
    return StoreState(prefix, version, parameters, stored)


def encode_selected(
    loaded: checkpoint.Checkpoint, select: Callable[[str], bool], store: str
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """The codec's arguments for a file of the parameters of `loaded` that `select` keeps (and
    their ties' targets), with its step and metadata. Raises `InvalidArgument`."""
    state = decode(loaded, select=select)
    return encode(store, state, snapshot_step(loaded.metadata), user_metadata(loaded.metadata))


def _from_base(base: StoreState, name: str, entry: Mapping[str, Any]) -> np.ndarray:
    array = base.data.get(name)
    if array is None or list(array.shape) != entry.get("shape") or \
            array.dtype.name != entry.get("dtype"):
        raise InvalidArgument(f"parameter {name!r} of the delta does not match its base")
    return array


def _parsed_listing(raw: str) -> list[dict[str, Any]]:
    try:
        listing = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{PARAMETERS_KEY} is not valid JSON: {error}") from None
    if not isinstance(listing, list):
        raise InvalidArgument(f"{PARAMETERS_KEY} must be a list")
    entries = [{"name": entry} if isinstance(entry, str) else entry for entry in listing]
    if not all(isinstance(entry, dict) and isinstance(entry.get("name"), str)
               for entry in entries):
        raise InvalidArgument(f"{PARAMETERS_KEY} must list names, or objects with a name")
    return entries


def user_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The caller's part of a file's metadata: everything not under `paramstore.`."""
    return {key: value for key, value in metadata.items() if not key.startswith("paramstore.")}


def snapshot_step(metadata: Mapping[str, str]) -> int:
    return _int(metadata.get(STEP_KEY), NO_STEP)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
