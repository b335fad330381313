"""Automatic names: per-hint counters (`dense0`, `dense1`, `sequential0`, ...).

A block created outside any `name_scope()` and without a `prefix` takes its number from the
current `NameManager`, one counter per hint (the block's lower-cased class name, or the
activation type for `Activation`). The counters are per thread and live as long as the process;
`with NameManager():` starts fresh counters and restores the previous ones on exit, which is how a
script (or a test) gets `dense0` again.
"""

from __future__ import annotations

import threading

__all__ = ["NameManager", "Prefix", "current"]


class NameManager:
    """Hands out `hint + number` names, one counter per hint; a context manager."""

    def __init__(self) -> None:
        self._counter: dict[str, int] = {}
        self._previous: list[NameManager] = []

    def get(self, name: str | None, hint: str) -> str:
        """`name` if given, else `hint` followed by the next number for that hint."""
        if name:
            return name
        number = self._counter.get(hint, 0)
        self._counter[hint] = number + 1
        return f"{hint}{number}"

    def __enter__(self) -> NameManager:
        self._previous.append(current())
        _state.manager = self
        return self

    def __exit__(self, *exc: object) -> None:
        _state.manager = self._previous.pop()


class Prefix(NameManager):
    """A `NameManager` that puts `prefix` in front of every automatic name."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def get(self, name: str | None, hint: str) -> str:
        return self._prefix + super().get(name, hint)


class _State(threading.local):
    def __init__(self) -> None:
        self.manager = NameManager()


_state = _State()


def current() -> NameManager:
    """The name manager in effect in this thread."""
    return _state.manager
