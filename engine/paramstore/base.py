"""The engine's error base class: what Gluon code catches as the framework's own error."""


class EngineError(RuntimeError):
    """An error raised by the engine's operators and autograd (Gluon's `MXNetError`)."""
