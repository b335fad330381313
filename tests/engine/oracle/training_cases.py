"""Learning-rate schedules and optimizer steps, run alike on MXNet and paramstore.

A schedule case is `(name, scheduler class name, kwargs)`: the learning rate it gives at
updates 0..UPDATES-1, asked in order. An optimizer case is `(name, optimizer name, kwargs,
dtype)`: the weight after each of the `GRADIENTS` applied to `WEIGHT` under key 0. A
`lr_scheduler` kwarg is written `(class name, kwargs)` and built by each engine's module.
"""

import numpy as np

UPDATES = 30

SCHEDULES = [
    ("factor", "FactorScheduler", {"step": 5, "factor": 0.5, "base_lr": 0.1}),
    ("factor floor", "FactorScheduler",
     {"step": 3, "factor": 0.1, "stop_factor_lr": 1e-4, "base_lr": 1.0}),
    ("factor linear warmup", "FactorScheduler",
     {"step": 4, "factor": 0.9, "base_lr": 0.5, "warmup_steps": 6, "warmup_begin_lr": 0.05}),
    ("multifactor", "MultiFactorScheduler", {"step": [3, 7, 20], "factor": 0.3, "base_lr": 0.2}),
    ("multifactor constant warmup", "MultiFactorScheduler",
     {"step": [8, 12], "factor": 0.5, "base_lr": 0.2, "warmup_steps": 5,
      "warmup_begin_lr": 0.01, "warmup_mode": "constant"}),
    ("poly", "PolyScheduler", {"max_update": 20, "base_lr": 0.1, "pwr": 2}),
    ("poly final warmup", "PolyScheduler",
     {"max_update": 25, "base_lr": 0.1, "pwr": 1.5, "final_lr": 0.01, "warmup_steps": 5}),
    ("cosine", "CosineScheduler", {"max_update": 20, "base_lr": 0.1}),
    ("cosine final warmup", "CosineScheduler",
     {"max_update": 24, "base_lr": 0.3, "final_lr": 0.02, "warmup_steps": 4,
      "warmup_begin_lr": 0.1}),
]

_rng = np.random.default_rng(41)
WEIGHT = _rng.uniform(-1.0, 1.0, (2, 3)).astype(np.float32)
GRADIENTS = [_rng.uniform(-1.5, 1.5, (2, 3)).astype(np.float32) for _ in range(5)]

_SCHEDULE = ("FactorScheduler", {"step": 2, "factor": 0.5, "base_lr": 0.1})
_CLIPPED = {"wd": 0.05, "clip_gradient": 0.6, "rescale_grad": 0.8}

OPTIMIZERS = [
    ("sgd momentum clipped", "sgd", {"learning_rate": 0.1, "momentum": 0.9, **_CLIPPED},
     "float32"),
    ("sgd scheduled", "sgd", {"momentum": 0.5, "lr_scheduler": _SCHEDULE}, "float32"),
    ("sgd float16 multi_precision", "sgd",
     {"learning_rate": 0.1, "momentum": 0.9, "multi_precision": True}, "float16"),
    ("adam scheduled", "adam", {"learning_rate": 0.05, "lr_scheduler": _SCHEDULE}, "float32"),
    ("nag", "nag", {"learning_rate": 0.1, "momentum": 0.9}, "float32"),
    ("nag clipped", "nag", {"learning_rate": 0.1, "momentum": 0.8, **_CLIPPED}, "float32"),
    ("nag no momentum", "nag", {"learning_rate": 0.1, **_CLIPPED}, "float32"),
    ("nag float16 multi_precision", "nag",
     {"learning_rate": 0.1, "momentum": 0.9, "multi_precision": True}, "float16"),
    ("signum", "signum", {}, "float32"),
    ("signum decays", "signum", {"learning_rate": 0.05, "wd_lh": 0.1, **_CLIPPED}, "float32"),
    ("signsgd", "signum", {"momentum": 0.0, "wd": 0.1}, "float32"),
    ("ftml", "ftml", {}, "float32"),
    ("ftml clipped", "ftml", {"learning_rate": 0.05, "beta1": 0.5, **_CLIPPED}, "float32"),
    ("lamb", "lamb", {"learning_rate": 0.01}, "float32"),
    ("lamb bounded", "lamb", {"learning_rate": 0.01, "lower_bound": 1.5, "upper_bound": 2.0,
                              **_CLIPPED}, "float32"),
    ("lamb without bias correction", "lamb",
     {"learning_rate": 0.01, "bias_correction": False, "wd": 0.1}, "float32"),
    ("adamax", "adamax", {}, "float32"),
    ("adamax clipped", "adamax", {"learning_rate": 0.01, "beta1": 0.8, **_CLIPPED}, "float32"),
    ("adadelta", "adadelta", {}, "float32"),
    ("adadelta clipped", "adadelta", {"rho": 0.5, "epsilon": 1e-3, **_CLIPPED}, "float32"),
    ("adagrad", "adagrad", {"learning_rate": 0.1}, "float32"),
    ("adagrad clipped", "adagrad", {"learning_rate": 0.1, "eps": 1e-3, **_CLIPPED}, "float32"),
    ("rmsprop", "rmsprop", {}, "float32"),
    ("rmsprop clipped", "rmsprop", {"learning_rate": 0.01, "gamma1": 0.8, **_CLIPPED},
     "float32"),
    ("rmsprop centered", "rmsprop",
     {"learning_rate": 0.01, "centered": True, "gamma2": 0.7, "clip_weights": 0.9, **_CLIPPED},
     "float32"),
    ("ftrl", "ftrl", {}, "float32"),
    ("ftrl decays", "ftrl", {"learning_rate": 0.5, "lamda1": 0.2, "beta": 0.5, **_CLIPPED},
     "float32"),
]
