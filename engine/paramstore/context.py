"""Devices. Everything runs on the CPU; contexts exist so Gluon code that names them runs."""

from __future__ import annotations

import threading


class Context:
    """A device such as `cpu(0)`; usable as a context manager that makes it the default."""

    __slots__ = ("device_type", "device_id", "_previous")

    def __init__(self, device_type: str = "cpu", device_id: int = 0) -> None:
        self.device_type = device_type
        self.device_id = device_id

    def __repr__(self) -> str:
        return f"{self.device_type}({self.device_id})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Context)
            and self.device_type == other.device_type
            and self.device_id == other.device_id
        )

    def __hash__(self) -> int:
        return hash((self.device_type, self.device_id))

    def __enter__(self) -> Context:
        self._previous = current_context()
        _default.context = self
        return self

    def __exit__(self, *exc: object) -> None:
        _default.context = self._previous


class _Default(threading.local):
    context = Context("cpu", 0)


_default = _Default()


def cpu(device_id: int = 0) -> Context:
    return Context("cpu", device_id)


def gpu(device_id: int = 0) -> Context:
    return Context("gpu", device_id)


def current_context() -> Context:
    """The default context: `cpu(0)` unless a `with ctx:` block says otherwise."""
    return _default.context
