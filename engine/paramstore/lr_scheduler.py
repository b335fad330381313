"""Learning-rate schedules (Gluon's `lr_scheduler`): the learning rate as a function of the update.

A scheduler is called with the optimizer's update count and returns the learning rate for that
update: `sched(num_update)`. Every scheduler may start with a warmup of `warmup_steps` updates
rising linearly from `warmup_begin_lr` to `base_lr` (`warmup_mode='linear'`) or holding
`warmup_begin_lr` (`'constant'`). An optimizer given `lr_scheduler=` asks it at every update.

Schedulers travel as data like optimizers: `dumps()` gives `[name, constructor kwargs]` and
`create_from_config` rebuilds one; the step schedulers catch up with any update count, so a
rebuilt scheduler answers as the original does.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "CosineScheduler", "FactorScheduler", "LRScheduler", "MultiFactorScheduler", "PolyScheduler",
    "create_from_config",
]


class LRScheduler:
    """The base of every schedule: `base_lr` after an optional warmup.

    Raises `ValueError` for a warmup that starts above `base_lr`, negative `warmup_steps` or an
    unknown `warmup_mode`.
    """

    def __init__(
        self,
        base_lr: float = 0.01,
        warmup_steps: int = 0,
        warmup_begin_lr: float = 0,
        warmup_mode: str = "linear",
    ) -> None:
        if not isinstance(warmup_steps, int):
            raise ValueError(f"warmup_steps must be an int, got {warmup_steps!r}")
        if warmup_begin_lr > base_lr:
            raise ValueError("Base lr has to be higher than warmup_begin_lr")
        if warmup_steps < 0:
            raise ValueError("Warmup steps has to be positive or 0")
        if warmup_mode not in ("linear", "constant"):
            raise ValueError("Supports only linear and constant modes of warmup")
        self.base_lr = base_lr
        self.warmup_steps = warmup_steps
        self.warmup_begin_lr = warmup_begin_lr
        self.warmup_final_lr = base_lr
        self.warmup_mode = warmup_mode
        self._config: dict[str, Any] = {
            "base_lr": base_lr, "warmup_steps": warmup_steps,
            "warmup_begin_lr": warmup_begin_lr, "warmup_mode": warmup_mode,
        }

    def get_warmup_lr(self, num_update: int) -> float:
        """The learning rate of update `num_update` (< `warmup_steps`) during the warmup."""
        if self.warmup_mode == "constant":
            return self.warmup_begin_lr
        rise = (self.warmup_final_lr - self.warmup_begin_lr) * num_update / self.warmup_steps
        return self.warmup_begin_lr + rise

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        return self._after_warmup(num_update)

    def _after_warmup(self, num_update: int) -> float:
        return self.base_lr

    def dumps(self) -> str:
        """JSON `[registered name, constructor kwargs]` (the schedule as first configured)."""
        return json.dumps(self.config())

    def config(self) -> list:
        return [type(self).__name__, dict(self._config)]


class FactorScheduler(LRScheduler):
    """`base_lr` multiplied by `factor` after every `step` updates, never below `stop_factor_lr`.

    Raises `ValueError` for a `step` below 1 or a `factor` above 1.
    """

    def __init__(
        self, step: int, factor: float = 1, stop_factor_lr: float = 1e-8,
        base_lr: float = 0.01, warmup_steps: int = 0, warmup_begin_lr: float = 0,
        warmup_mode: str = "linear",
    ) -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if step < 1:
            raise ValueError("Schedule step must be greater or equal than 1 round")
        if factor > 1.0:
            raise ValueError("Factor must be no more than 1 to make lr reduce")
        self.step, self.factor, self.stop_factor_lr = step, factor, stop_factor_lr
        self.count = 0
        self._config.update(step=step, factor=factor, stop_factor_lr=stop_factor_lr)

    def _after_warmup(self, num_update: int) -> float:
        # A loop, not a formula: a resumed run catches up with every step it missed.
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr = max(self.base_lr * self.factor, self.stop_factor_lr)
        return self.base_lr


class MultiFactorScheduler(LRScheduler):
    """`base_lr` multiplied by `factor` once past each update count listed in `step`.

    Raises `ValueError` for a `step` list that is empty, not increasing or below 1, or a
    `factor` above 1.
    """

    def __init__(
        self, step: list[int], factor: float = 1, base_lr: float = 0.01, warmup_steps: int = 0,
        warmup_begin_lr: float = 0, warmup_mode: str = "linear",
    ) -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if not isinstance(step, list) or not step:
            raise ValueError(f"step must be a non-empty list of update counts, got {step!r}")
        for previous, current in zip(step, step[1:]):
            if current <= previous:
                raise ValueError("Schedule step must be an increasing integer list")
        if step[0] < 1:
            raise ValueError("Schedule step must be greater or equal than 1 round")
        if factor > 1.0:
            raise ValueError("Factor must be no more than 1 to make lr reduce")
        self.step, self.factor = step, factor
        self.cur_step_ind = 0
        self.count = 0
        self._config.update(step=list(step), factor=factor)

    def _after_warmup(self, num_update: int) -> float:
        while self.cur_step_ind < len(self.step) and num_update > self.step[self.cur_step_ind]:
            self.count = self.step[self.cur_step_ind]
            self.cur_step_ind += 1
            self.base_lr *= self.factor
        return self.base_lr


class _Decay(LRScheduler):
    """A schedule from `base_lr` down to `final_lr` over the updates after the warmup."""

    def __init__(
        self, max_update: int, base_lr: float, final_lr: float, warmup_steps: int,
        warmup_begin_lr: float, warmup_mode: str,
    ) -> None:
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if not isinstance(max_update, int):
            raise ValueError(f"max_update must be an int, got {max_update!r}")
        if max_update < 1:
            raise ValueError("maximum number of updates must be strictly positive")
        self.base_lr_orig = base_lr
        self.max_update = max_update
        self.final_lr = final_lr
        self.max_steps = max_update - warmup_steps
        self._config.update(max_update=max_update, final_lr=final_lr)

    def _after_warmup(self, num_update: int) -> float:
        # Past max_update the last rate stays.
        if num_update <= self.max_update:
            progress = (num_update - self.warmup_steps) / self.max_steps
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * self._shape(
                progress)
        return self.base_lr

    def _shape(self, progress: float) -> float:
        raise NotImplementedError


class PolyScheduler(_Decay):
    """`final_lr + (base_lr - final_lr) * (1 - progress) ** pwr` until `max_update`."""

    def __init__(
        self, max_update: int, base_lr: float = 0.01, pwr: float = 2, final_lr: float = 0,
        warmup_steps: int = 0, warmup_begin_lr: float = 0, warmup_mode: str = "linear",
    ) -> None:
        super().__init__(max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                         warmup_mode)
        self.power = pwr
        self._config.update(pwr=pwr)

    def _shape(self, progress: float) -> float:
        return (1 - progress) ** self.power


class CosineScheduler(_Decay):
    """`final_lr + (base_lr - final_lr) * (1 + cos(pi * progress)) / 2` until `max_update`."""

    def __init__(
        self, max_update: int, base_lr: float = 0.01, final_lr: float = 0,
        warmup_steps: int = 0, warmup_begin_lr: float = 0, warmup_mode: str = "linear",
    ) -> None:
        super().__init__(max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                         warmup_mode)

    def _shape(self, progress: float) -> float:
        return (1 + math.cos(math.pi * progress)) / 2


_SCHEDULERS = {klass.__name__: klass for klass in (
    LRScheduler, FactorScheduler, MultiFactorScheduler, PolyScheduler, CosineScheduler)}


def create_from_config(config: Any) -> LRScheduler:
    """A scheduler from its `config()` (`[class name, kwargs]`), through a fixed table only.

    Raises `ValueError` for anything else.
    """
    if not (isinstance(config, (list, tuple)) and len(config) == 2
            and config[0] in _SCHEDULERS and isinstance(config[1], dict)):
        raise ValueError(f"a learning-rate scheduler's config must be [name, {{kwargs}}] naming "
                         f"one of {sorted(_SCHEDULERS)}, got {config!r}")
    return _SCHEDULERS[config[0]](**config[1])
