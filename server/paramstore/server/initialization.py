"""Running an initializer on a store: rebuilt from its `dumps()` JSON through the registry."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from paramstore import init
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray
from paramstore.server.errors import InvalidArgument
from paramstore.server.stores import Store, StoreState

MAX_INITIALIZER_LENGTH = 64 << 10


def rebuild(text: str) -> init.Initializer:
    """The initializer `text` (its `dumps()` JSON, or a registered name) describes.

    Only registered classes are ever built. Raises `InvalidArgument` naming the supported ones.
    """
    supported = ", ".join(init.registered_names())
    if len(text) > MAX_INITIALIZER_LENGTH:
        raise InvalidArgument(f"initializer JSON exceeds {MAX_INITIALIZER_LENGTH} characters")
    try:
        return init.create(text)
    except AssertionError as error:
        raise InvalidArgument(
            f"{error}; custom initializers cannot run on the server. Supported: {supported}"
        ) from None
    except (ValueError, TypeError) as error:
        raise InvalidArgument(
            f"invalid initializer {text[:200]!r}: {error}. Supported: {supported}"
        ) from None


def initialize(
    store: Store, text: str, matches: Callable[[str], bool], *, force_reinit: bool
) -> tuple[list[str], StoreState]:
    """Fill the selected parameters of known shape with the initializer `text` describes.

    Parameters holding data are left alone unless `force_reinit`; aliases follow their targets.
    Returns the names filled and the new state. Raises `InvalidArgument` (unknown initializer,
    or one that refuses a parameter, e.g. Xavier on a vector); then nothing changes.
    """
    initializer = rebuild(text)
    filled: list[str] = []

    def fill(state: StoreState) -> dict[str, np.ndarray]:
        arrays = {}
        for info in state.select(matches):
            if info.alias_of or info.shape is None or 0 in info.shape:
                continue
            if state.array(info.name) is not None and not force_reinit:
                continue
            array = NDArray._wrap(np.zeros(info.shape, dtype=info.dtype))
            try:
                initializer(init.InitDesc(info.name, {"__init__": initializer}), array)
            except (ValueError, TypeError, AssertionError, ArithmeticError, EngineError) as error:
                raise InvalidArgument(f"cannot initialize {info.name!r}: {error}") from None
            arrays[info.name] = np.asarray(array)
            filled.append(info.name)
        return arrays

    state = store.update(fill)
    return filled, state
