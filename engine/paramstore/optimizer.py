"""Optimizers (Gluon's `optimizer`): how a weight moves, given its gradient.

An optimizer updates NumPy arrays in place: `opt.update(key, weight, grad)`. It keeps its own
per-key state (momentum, Adam's moments, update counts), so one object serves a `Trainer` (keys
are parameter indices) or a store (keys are parameter names) alike.

Optimizers travel as data: `opt.dumps()` gives `'["sgd", {"learning_rate": 0.1, ...}]'` and
`create_from_json(text)` rebuilds it from the registry (no pickles, no code). Their state travels
as plain arrays: `get_states()` returns `{name: numpy array}` ready for safetensors, and
`set_states()` resumes training exactly where it stopped.

Learning rate and weight decay of a key are multiplied by its parameter's `lr_mult`/`wd_mult`
(read at every update from `param_dict`, which the Trainer fills), or else by the `lr_mult` /
`wd_mult` mappings given to the constructor or to `set_lr_mult`/`set_wd_mult`.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from paramstore import checkpoint
from paramstore import lr_scheduler as lr_scheduler_module

__all__ = [
    "FTML", "LAMB", "NAG", "SGD", "SGLD", "AdaDelta", "AdaGrad", "Adam", "Adamax", "Ftrl",
    "Optimizer", "RMSProp", "Signum", "create", "create_from_json", "load_states", "register",
    "save_states",
]

Key = int | str


def _real(name: str, value: Any) -> float:
    """`value` as a float; raise `ValueError` naming the hyper-parameter when it is not one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"optimizer hyper-parameter {name} must be a finite number, got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    """`value` as an update count; raise `ValueError` naming it when it is not a whole number
    that fits the int64 counters of the optimizer's state."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
            not -2**63 <= value < 2**63:
        raise ValueError(f"optimizer {name} must be a whole number within int64, got {value!r}")
    return int(value)


def _multipliers(name: str, values: Mapping[Key, Any] | None) -> dict[Key, float]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{name} must map parameter keys to numbers, got {values!r}")
    return {key: _real(f"{name}[{key!r}]", mult) for key, mult in values.items()}


class Optimizer:
    """The base of every optimizer: learning rate, weight decay, gradient rescaling and clipping.

    Subclasses name their per-key state arrays in `state_names(...)`, create them in
    `create_state` and move the weight in `_apply`. A subclass written for Gluon works too:
    its `create_state(index, weight)` and `update(index, weight, grad, state)` receive NDArrays
    that write through to the weight, and may call `_update_count`, `_get_lr` and `_get_wd`
    (such states are not part of `get_states`). Not thread-safe: callers serialize updates.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        custom = cls.__dict__.get("update")
        if custom is not None and len(inspect.signature(custom).parameters) == 5:
            cls._gluon_update = custom  # type: ignore[attr-defined]
            cls.update = Optimizer._update_ndarrays  # type: ignore[method-assign]
        apply = cls.__dict__.get("_apply")
        if apply is not None:
            cls._applies_out = "out" in inspect.signature(apply).parameters

    # Whether `_apply` takes `out=` and writes the moved weight there: else `update(out=)`
    # copies the weight into `out` first and moves it in place.
    _applies_out = False

    def _update_ndarrays(self, key: Key, weight: np.ndarray, grad: np.ndarray,
                         out: np.ndarray | None = None) -> None:
        """`update` for a subclass written for Gluon: its own rule, on NDArray views."""
        from paramstore.nd.ndarray import NDArray

        if out is not None and out is not weight:
            np.copyto(out, weight)
            weight = out

        w, g = NDArray._wrap(weight), NDArray._wrap(grad)
        if key not in self._states:
            create = type(self).create_state
            takes_index = len(inspect.signature(create).parameters) == 3
            self._states[key] = create(self, key, w) if takes_index else None  # type: ignore
        self._gluon_update(key, w, g, self._states[key])  # type: ignore[attr-defined]

    @property
    def _index_update_count(self) -> dict[Key, int]:
        return self._counts

    def __init__(
        self,
        rescale_grad: float = 1.0,
        wd: float = 0.0,
        clip_gradient: float | None = None,
        learning_rate: float | None = None,
        lr_scheduler: lr_scheduler_module.LRScheduler | list | None = None,
        begin_num_update: int = 0,
        multi_precision: bool = False,
        param_dict: Mapping[Key, Any] | None = None,
        lr_mult: Mapping[Key, float] | None = None,
        wd_mult: Mapping[Key, float] | None = None,
        param_idx2name: Mapping[int, str] | None = None,
        sym: Any = None,
    ) -> None:
        self.rescale_grad = _real("rescale_grad", rescale_grad)
        self.wd = _real("wd", wd)
        if clip_gradient is not None and _real("clip_gradient", clip_gradient) < 0:
            raise ValueError(f"clip_gradient must be None or >= 0, got {clip_gradient!r}")
        self.clip_gradient = None if clip_gradient is None else float(clip_gradient)
        if isinstance(lr_scheduler, (list, tuple)):  # as `dumps()` wrote it
            lr_scheduler = lr_scheduler_module.create_from_config(lr_scheduler)
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise ValueError(f"lr_scheduler must be an LRScheduler, got {lr_scheduler!r}")
        self.lr_scheduler = lr_scheduler
        if lr_scheduler is None and learning_rate is None:
            learning_rate = 0.01
        self.lr = None if learning_rate is None else _real("learning_rate", learning_rate)
        if lr_scheduler is not None and self.lr is not None and lr_scheduler.base_lr != self.lr:
            # Gluon's rule: an optimizer's own learning rate wins over its scheduler's.
            warnings.warn("learning rate from ``lr_scheduler`` has been overwritten by "
                          "``learning_rate`` in optimizer.", UserWarning, stacklevel=2)
            lr_scheduler.base_lr = self.lr
        self.multi_precision = bool(multi_precision)
        self.idx2name = dict(param_idx2name or {})
        self.begin_num_update = _count("begin_num_update", begin_num_update)
        self.num_update = self.begin_num_update
        self.param_dict: dict[Key, Any] = dict(param_dict or {})
        self.lr_mult = _multipliers("lr_mult", lr_mult)
        self.wd_mult = _multipliers("wd_mult", wd_mult)
        self._states: dict[Key, tuple[np.ndarray, ...]] = {}
        self._counts: dict[Key, int] = {}
        self._scratch: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = {}
        self._masters: dict[Key, np.ndarray] = {}  # float32 copies of float16 weights

    # ---- hyper-parameters --------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update: the scheduler's, when there is one."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr  # type: ignore[return-value]

    def set_learning_rate(self, lr: float) -> None:
        """Use `lr` from now on; raises `UserWarning` when a scheduler sets the rate."""
        if self.lr_scheduler is not None:
            raise UserWarning(
                "LRScheduler of the optimizer has already been defined. Note that "
                "set_learning_rate can mutate the value of the learning rate of the optimizer "
                "only when the LRScheduler of the optimizer is undefined."
            )
        self.lr = _real("learning_rate", lr)

    def set_lr_mult(self, args_lr_mult: Mapping[Key, float]) -> None:
        """Multiply the learning rate of the given keys (names survive `dumps`) by these values."""
        self.lr_mult = _multipliers("lr_mult", args_lr_mult)

    def set_wd_mult(self, args_wd_mult: Mapping[Key, float]) -> None:
        """Multiply the weight decay of the given keys by these values."""
        self.wd_mult = _multipliers("wd_mult", args_wd_mult)

    # Constructor arguments kept as attributes of the same name, rebuilt by `dumps` JSON.
    _HYPER: tuple[str, ...] = ()

    def _hyper_parameters(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this optimizer (subclasses add theirs, or
        name them in `_HYPER`)."""
        parameters = {
            "learning_rate": self.lr,
            "wd": self.wd,
            "rescale_grad": self.rescale_grad,
            "clip_gradient": self.clip_gradient,
        }
        if self.multi_precision:
            parameters["multi_precision"] = True
        if self.lr_scheduler is not None:
            parameters["lr_scheduler"] = self.lr_scheduler.config()
        parameters.update((name, getattr(self, name)) for name in self._HYPER)
        return parameters

    def dumps(self) -> str:
        """JSON `[registered name, constructor kwargs]`, the form `create_from_json` reads back.

        Multipliers set by name (`set_lr_mult`) are included; those read live from
        `param_dict` are not, because they belong to the Parameters.
        """
        kwargs = self._hyper_parameters()
        for name, values in (("lr_mult", self.lr_mult), ("wd_mult", self.wd_mult)):
            if values:
                kwargs[name] = {str(key): mult for key, mult in values.items()}
        return json.dumps([type(self).__name__.lower(), kwargs])

    # ---- updates -----------------------------------------------------------------------------
    # Names of the per-key state arrays, when they do not depend on the hyper-parameters.
    _STATES: tuple[str, ...] = ()

    def state_names(self) -> tuple[str, ...]:
        """Names of the per-key state arrays, in the order `create_state` returns them."""
        return self._STATES

    def create_state(self, weight: np.ndarray) -> tuple[np.ndarray, ...]:
        """Fresh per-key state for `weight` (zeros shaped like it)."""
        return tuple(np.zeros_like(weight) for _ in self.state_names())

    def update(self, key: Key, weight: np.ndarray, grad: np.ndarray,
               out: np.ndarray | None = None) -> None:
        """Move `weight` by one step of this optimizer, given `grad` (left unchanged): in place,
        or into `out`, an array of the weight's shape and dtype, leaving `weight` unchanged
        too (what a caller that keeps the old weight would otherwise copy first).

        Raises `ValueError` when `grad` or `out` and `weight` differ in shape.
        """
        if grad.shape != weight.shape:
            raise ValueError(
                f"gradient of shape {grad.shape} for the weight {key!r} of shape {weight.shape}"
            )
        if out is None:
            out = weight
        elif out.shape != weight.shape or out.dtype != weight.dtype:
            raise ValueError(f"out is {out.dtype}{list(out.shape)} for the weight {key!r} of "
                             f"{weight.dtype}{list(weight.shape)}")
        if self.multi_precision and weight.dtype == np.float16:
            # The update runs on a float32 copy kept across steps; the weight gets its rounding.
            master = self._masters.get(key)
            if master is None:
                master = self._masters[key] = weight.astype(np.float32)
            self.update(key, master, grad.astype(np.float32))
            np.copyto(out, master, casting="unsafe")
            return
        if out is not weight and not self._applies_out:
            np.copyto(out, weight)
            weight = out
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self.create_state(weight)
        # `_update_count`, `_get_lr` and `_get_wd` inlined: this runs per parameter per step.
        count = self._counts[key] = self._counts.get(key, self.begin_num_update) + 1
        if count > self.num_update:
            self.num_update = count
        holder = self.param_dict.get(key)
        if holder is not None and self.lr_scheduler is None:
            lr, wd = self.lr * holder.lr_mult, self.wd * holder.wd_mult
        else:
            lr, wd = self._get_lr(key), self._get_wd(key)
        if self._applies_out:
            self._apply(weight, grad, state, lr, wd, count, out=out)
        else:
            self._apply(weight, grad, state, lr, wd, count)

    def _update_count(self, key: Key) -> int:
        """Count one more update of `key`; return its count (Gluon's name, for subclasses)."""
        count = self._counts[key] = self._counts.get(key, self.begin_num_update) + 1
        if count > self.num_update:
            self.num_update = count
        return count

    def _get_lr(self, key: Key) -> float:
        """The learning rate of `key`'s update: scheduled or set, times its multiplier."""
        lr = self.lr_scheduler(self.num_update) if self.lr_scheduler is not None else self.lr
        holder = self.param_dict.get(key)
        return lr * (holder.lr_mult if holder is not None else self._multiplier(self.lr_mult, key))

    def _get_wd(self, key: Key) -> float:
        """The weight decay of `key`'s update, times its multiplier."""
        holder = self.param_dict.get(key)
        mult = holder.wd_mult if holder is not None else self._multiplier(self.wd_mult, key)
        return self.wd * mult

    def _multiplier(self, values: dict[Key, float], key: Key) -> float:
        if key in values:
            return values[key]
        name = self.idx2name.get(key) if isinstance(key, int) else None
        return values.get(name, 1.0) if name is not None else 1.0

    def _apply(
        self,
        weight: np.ndarray,
        grad: np.ndarray,
        state: tuple[np.ndarray, ...],
        lr: float,
        wd: float,
        count: int,
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define its update")

    def _buffers(self, like: np.ndarray, count: int) -> list[np.ndarray]:
        """`count` scratch arrays shaped like `like`, reused across updates to spare allocations."""
        buffers = self._scratch.setdefault((like.shape, like.dtype), [])
        while len(buffers) < count:
            buffers.append(np.empty_like(like))
        return buffers[:count]

    def _rescaled_gradient(self, grad: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.multiply(grad, self.rescale_grad, out=out)

    def _clip(self, values: np.ndarray) -> None:
        # Gluon treats a clip_gradient of 0 like None.
        if self.clip_gradient:
            np.clip(values, -self.clip_gradient, self.clip_gradient, out=values)

    def _gradient(self, grad: np.ndarray, weight: np.ndarray, wd: float,
                  decay_clipped: bool) -> np.ndarray:
        """A new `clip(rescale_grad * grad) + wd * weight`, or with `decay_clipped`
        `clip(rescale_grad * grad + wd * weight)`: Gluon's optimizers differ in this."""
        g = grad * self.rescale_grad
        if decay_clipped:
            g += wd * weight
            self._clip(g)
        else:
            self._clip(g)
            g += wd * weight
        return g

    # ---- state as plain arrays ----------------------------------------------------------------
    def get_states(self) -> dict[str, np.ndarray]:
        """Every per-key state as flat `{name: array copy}`, ready for a safetensors file.

        Names are `num_update`, `<key>/count`, `<key>/<state name>` and, with
        `multi_precision`, `<key>/weight32` (the float32 copy of a float16 weight); an integer
        key is written in decimal (and a key made only of digits is read back as an integer).
        """
        states: dict[str, np.ndarray] = {"num_update": np.array(self.num_update, dtype=np.int64)}
        for key, count in self._counts.items():
            states[f"{key}/count"] = np.array(count, dtype=np.int64)
        names = self.state_names()
        for key, arrays in self._states.items() if names else ():
            for name, array in zip(names, arrays):
                states[f"{key}/{name}"] = array.copy()
        for key, master in self._masters.items():
            states[f"{key}/{_MASTER}"] = master.copy()
        return states

    def set_states(self, states: Mapping[str, np.ndarray]) -> None:
        """Replace every per-key state with the arrays of `get_states()` (copied).

        Raises `ValueError` for a name this optimizer does not keep, or a key whose state is
        incomplete; nothing changes then.
        """
        names = self.state_names()
        counts: dict[Key, int] = {}
        masters: dict[Key, np.ndarray] = {}
        arrays: dict[Key, dict[str, np.ndarray]] = {}
        num_update = self.begin_num_update
        for entry, value in states.items():
            if entry == "num_update":
                num_update = int(np.asarray(value))
                continue
            raw_key, _, name = entry.rpartition("/")
            key: Key = int(raw_key) if raw_key.isdigit() else raw_key
            if not raw_key or (name not in ("count", _MASTER) and name not in names):
                raise ValueError(
                    f"{type(self).__name__} keeps no state named {entry!r}; "
                    f"expected num_update, <key>/count or <key>/<one of {list(names)}>"
                )
            if name == "count":
                counts[key] = int(np.asarray(value))
            elif name == _MASTER:
                masters[key] = np.array(value, dtype=np.float32)
            else:
                arrays.setdefault(key, {})[name] = np.array(value, copy=True)
        for key, found in arrays.items():
            if len(found) != len(names):
                missing = sorted(set(names) - set(found))
                raise ValueError(f"state of {key!r} is missing {missing}")
        self._counts = counts
        self._masters = masters
        self._states = {key: tuple(found[name] for name in names) for key, found in arrays.items()}
        self.num_update = num_update


_MASTER = "weight32"
_REGISTRY: dict[str, type[Optimizer]] = {}
_OptimizerClass = TypeVar("_OptimizerClass", bound=type[Optimizer])


def register(klass: _OptimizerClass) -> _OptimizerClass:
    """Class decorator: make `klass` creatable by its lower-cased name (`create('sgd')`).

    Raises `TypeError` when `klass` is not an `Optimizer` subclass.
    """
    if not (isinstance(klass, type) and issubclass(klass, Optimizer)):
        raise TypeError(f"Can only register subclass of Optimizer, got {klass!r}")
    _REGISTRY[klass.__name__.lower()] = klass
    return klass


def create(name: str, **kwargs: Any) -> Optimizer:
    """A new optimizer of the registered `name` (any case), built with `kwargs`.

    Raises `ValueError: Cannot find optimizer <name>` for an unknown name and the constructor's
    `TypeError` for a keyword argument it does not take.
    """
    klass = _REGISTRY.get(name.lower()) if isinstance(name, str) else None
    if klass is None:
        raise ValueError(f"Cannot find optimizer {name}")
    return klass(**kwargs)


def create_from_json(text: str) -> Optimizer:
    """Rebuild an optimizer from its `dumps()` JSON, through the registry only.

    Raises `ValueError` for text that is not `[name, {kwargs}]` or names no registered
    optimizer, `TypeError` for keyword arguments the optimizer does not take.
    """
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"optimizer JSON cannot be parsed: {error}") from None
    if not (
        isinstance(parsed, list)
        and len(parsed) == 2
        and isinstance(parsed[0], str)
        and isinstance(parsed[1], dict)
    ):
        raise ValueError(f"an optimizer's JSON must be [name, {{kwargs}}], got {text[:200]!r}")
    name, kwargs = parsed
    return create(name, **kwargs)


_OPTIMIZER_KEY = "paramstore.optimizer"


def save_states(fname: str | os.PathLike[str], optimizer: Optimizer) -> None:
    """Write `optimizer` (its JSON, in the metadata) and its state arrays to a safetensors file.

    The file is replaced atomically. Raises `OSError` when it cannot be written.
    """
    checkpoint.save(fname, optimizer.get_states(), metadata=_described(optimizer))


def write_states(fname: str | os.PathLike[str], optimizer: Optimizer) -> None:
    """`save_states` for a caller that commits the file itself (`checkpoint.write`)."""
    checkpoint.write(fname, optimizer.get_states(), metadata=_described(optimizer))


def dumps_states(optimizer: Optimizer) -> bytes:
    """The bytes of the file `save_states` writes."""
    return checkpoint.dumps(optimizer.get_states(), metadata=_described(optimizer))


def load_states(fname: str | os.PathLike[str]) -> Optimizer:
    """The optimizer saved by `save_states`, with its state restored.

    Raises `ValueError` (`CheckpointError`) for a file that is not such a safetensors file.
    """
    return _rebuilt(checkpoint.load(fname), repr(os.fspath(fname)))


def loads_states(data: bytes | bytearray | memoryview) -> Optimizer:
    """`load_states` of the bytes of such a file."""
    return _rebuilt(checkpoint.loads(data), "the file")


def _rebuilt(saved: checkpoint.Checkpoint, what: str) -> Optimizer:
    text = saved.metadata.get(_OPTIMIZER_KEY)
    if text is None:
        raise checkpoint.CheckpointError(f"{what} holds no optimizer states")
    optimizer = create_from_json(text)
    optimizer.set_states(saved.tensors)
    return optimizer


def copy_of(optimizer: Optimizer) -> Optimizer:
    """An independent optimizer of the same kind, settings and state."""
    copy = create_from_json(optimizer.dumps())
    copy.set_states(optimizer.get_states())
    return copy


def _described(optimizer: Optimizer) -> dict[str, str]:
    return {_OPTIMIZER_KEY: optimizer.dumps()}


# Arrays up to this many elements are updated with temporaries rather than reused buffers.
_SMALL = 1 << 14


@register
class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum.

    With `g = clip(rescale_grad * grad)`: without momentum `w <- w - lr * (g + wd * w)`; with it
    `m <- momentum * m - lr * (g + wd * w); w <- w + m`.
    """

    def __init__(self, momentum: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = _real("momentum", momentum)

    def _hyper_parameters(self) -> dict[str, Any]:
        return {**super()._hyper_parameters(), "momentum": self.momentum}

    def state_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0.0 else ()

    def _apply(
        self,
        weight: np.ndarray,
        grad: np.ndarray,
        state: tuple[np.ndarray, ...],
        lr: float,
        wd: float,
        count: int,
        out: np.ndarray | None = None,
    ) -> None:
        out = weight if out is None else out
        # Products of scalars in the weight's precision, in the order of Gluon's float32 kernel.
        scalar = weight.dtype.type
        if not (state or wd or self.clip_gradient) and weight.size <= _SMALL:
            # The common plain step; small temporaries cost less than managing scratch space.
            np.subtract(weight, grad * (scalar(lr) * scalar(self.rescale_grad)), out=out)
            return
        step, decay = self._buffers(weight, 2)
        if self.clip_gradient:
            self._clip(self._rescaled_gradient(grad, step))
            step *= lr
        else:
            np.multiply(grad, scalar(lr) * scalar(self.rescale_grad), out=step)
        decay = np.multiply(weight, scalar(lr) * scalar(wd), out=decay) if wd else None
        if state:
            (velocity,) = state
            velocity *= self.momentum
            if decay is not None:
                velocity -= decay
            velocity -= step
            np.add(weight, velocity, out=out)
            return
        if decay is not None:
            step += decay
        np.subtract(weight, step, out=out)


@register
class Adam(Optimizer):
    """Adam: moments of the gradient, with bias correction folded into the learning rate.

    With `g = clip(rescale_grad * grad + wd * w)`, at the t-th update of a key:
    `m <- beta1 m + (1 - beta1) g`, `v <- beta2 v + (1 - beta2) g^2`,
    `w <- w - lr_t m / (sqrt(v) + epsilon)` where `lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)`.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = _real("beta1", beta1)
        self.beta2 = _real("beta2", beta2)
        self.epsilon = _real("epsilon", epsilon)

    def _hyper_parameters(self) -> dict[str, Any]:
        return {
            **super()._hyper_parameters(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
        }

    def state_names(self) -> tuple[str, ...]:
        return ("mean", "var")

    def _apply(
        self,
        weight: np.ndarray,
        grad: np.ndarray,
        state: tuple[np.ndarray, ...],
        lr: float,
        wd: float,
        count: int,
    ) -> None:
        lr *= math.sqrt(1.0 - self.beta2**count) / (1.0 - self.beta1**count)
        mean, var = state
        step, scratch = self._buffers(weight, 2)
        # Coefficients in the weight's precision, as a float32 kernel computes them.
        scalar = weight.dtype.type
        keep_mean, keep_var = scalar(self.beta1), scalar(self.beta2)
        g = self._rescaled_gradient(grad, step)
        if wd:
            g += np.multiply(weight, wd, out=scratch)
        self._clip(g)
        mean *= keep_mean
        mean += np.multiply(g, scalar(1) - keep_mean, out=scratch)
        var *= keep_var
        np.multiply(g, scalar(1) - keep_var, out=scratch)
        var += np.multiply(scratch, g, out=scratch)
        denominator = np.sqrt(var, out=scratch)
        denominator += self.epsilon
        step = np.multiply(mean, lr, out=step)
        weight -= np.divide(step, denominator, out=step)


# Gluon's other optimizers, registered on import; they live beside this module to keep it small.
from paramstore._optimizers import (  # noqa: E402
    FTML,
    LAMB,
    NAG,
    SGLD,
    AdaDelta,
    AdaGrad,
    Adamax,
    Ftrl,
    RMSProp,
    Signum,
)
