"""Running an initializer on a store: rebuilt from its `dumps()` JSON through the registry."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from paramstore import init
from paramstore.base import EngineError
from paramstore.nd.ndarray import NDArray
from paramstore.server.errors import FailedPrecondition, InvalidArgument
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
    except AssertionError:  # Gluon's "not registered ... register first" misleads here
        raise InvalidArgument(
            f"the server has no initializer {text[:200]} (no code crosses the wire, so a "
            "custom initializer cannot run there: initialize the local net with it and push "
            f"it instead). Supported: {supported}"
        ) from None
    except (ValueError, TypeError) as error:
        raise InvalidArgument(
            f"invalid initializer {text[:200]!r}: {error}. Supported: {supported}"
        ) from None


ATTEMPTS = 3  # computations thrown away because another write landed meanwhile


class _Moved(Exception):
    """The store changed while the initializer ran: compute again from the new state."""


def initialize(
    store: Store, text: str, matches: Callable[[str], bool], *, force_reinit: bool
) -> tuple[list[str], StoreState]:
    """Fill the selected parameters of known shape with the initializer `text` describes.

    Parameters holding data are left alone unless `force_reinit`; aliases follow their targets.
    The values are computed without the store's lock (an initializer can be slow on a big
    store) and committed only if the parameters they fill did not change meanwhile;
    otherwise they are computed again.
    Returns the names filled and the new state. Raises `InvalidArgument` (unknown initializer,
    one that refuses a parameter, e.g. Xavier on a vector, or one that would fill infinities
    or NaNs), `FailedPrecondition` (the store kept changing); then nothing changes.
    """
    initializer = rebuild(text)
    for _ in range(ATTEMPTS):
        seen = store.state()
        filled, arrays = _fill(initializer, seen, matches, force_reinit)
        try:
            return filled, store.update(
                functools.partial(_unless_moved, seen, arrays, force_reinit))
        except _Moved:
            continue
    raise FailedPrecondition(
        f"store {store.name!r}'s selected parameters changed during each of {ATTEMPTS} "
        "attempts to initialize them; "
        "retry when fewer writes are in flight"
    )


def _unless_moved(seen: StoreState, arrays: dict[str, np.ndarray], force_reinit: bool,
                  current: StoreState) -> dict[str, np.ndarray]:
    """`arrays`, if the parameters they fill are as they were when computed (writes to other
    parameters do not matter); raises `_Moved` otherwise."""
    for name in arrays:
        if current.parameters.get(name) != seen.parameters.get(name) or (
                not force_reinit and current.array(name) is not None):
            raise _Moved
    return arrays


def _fill(initializer: init.Initializer, state: StoreState, matches: Callable[[str], bool],
          force_reinit: bool) -> tuple[list[str], dict[str, np.ndarray]]:
    filled: list[str] = []
    arrays = {}
    for info in state.select(matches):
        if info.alias_of or info.shape is None or 0 in info.shape:
            continue
        if state.array(info.name) is not None and not force_reinit:
            continue
        array = NDArray._wrap(np.zeros(info.shape, dtype=info.dtype))
        try:
            # Overflows and NaNs are refused below, with the parameter's name, not warned of.
            with np.errstate(over="ignore", invalid="ignore"):
                initializer(init.InitDesc(info.name, {"__init__": initializer}), array)
        except (ValueError, TypeError, AssertionError, ArithmeticError, EngineError) as error:
            raise InvalidArgument(f"cannot initialize {info.name!r}: {error}") from None
        values = np.asarray(array)
        if not np.isfinite(values).all():  # a NaN or infinite argument, or one overflowing
            raise InvalidArgument(f"initializer {initializer.dumps()} would fill {info.name!r} "
                                  "with values that are not finite: check its arguments")
        arrays[info.name] = values
        filled.append(info.name)
    return filled, arrays
