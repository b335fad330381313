"""Gluon's optimizers against MXNet 1.9.1: the weight after each step, from recorded runs."""

import json
import math
import pathlib

import numpy as np
import pytest
from oracle.training_cases import GRADIENTS, OPTIMIZERS, WEIGHT

from paramstore import autograd, gluon, lr_scheduler, nd, optimizer

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "training.json").read_text())


def built(name: str, kwargs: dict) -> optimizer.Optimizer:
    kwargs = dict(kwargs)
    if "lr_scheduler" in kwargs:
        scheduler_name, scheduler_kwargs = kwargs["lr_scheduler"]
        kwargs["lr_scheduler"] = getattr(lr_scheduler, scheduler_name)(**scheduler_kwargs)
    return optimizer.create(name, **kwargs)


def steps(opt: optimizer.Optimizer, dtype: str) -> list:
    weight = WEIGHT.astype(dtype)
    after = []
    for grad in GRADIENTS:
        opt.update(0, weight, grad.astype(dtype))
        after.append(weight.astype(np.float64).reshape(-1).tolist())
    return after


@pytest.mark.filterwarnings("ignore:learning rate from")
@pytest.mark.parametrize("case, name, kwargs, dtype", OPTIMIZERS,
                         ids=[case[0] for case in OPTIMIZERS])
def test_each_step_moves_the_weight_as_gluon_does(case, name, kwargs, dtype):
    tolerance = 1e-3 if dtype == "float16" else 2e-5
    np.testing.assert_allclose(steps(built(name, kwargs), dtype), RECORDED["optimizers"][case],
                               rtol=tolerance, atol=tolerance * 1e-2)


@pytest.mark.filterwarnings("ignore:learning rate from")
@pytest.mark.parametrize("case, name, kwargs, dtype", OPTIMIZERS,
                         ids=[case[0] for case in OPTIMIZERS])
def test_an_optimizer_resumed_from_its_states_continues_exactly(case, name, kwargs, dtype):
    if name == "sgld":
        pytest.skip("SGLD draws noise")
    first = built(name, kwargs)
    weight = WEIGHT.astype(dtype)
    for grad in GRADIENTS[:2]:
        first.update(0, weight, grad.astype(dtype))
    resumed = optimizer.create_from_json(first.dumps())
    resumed.set_states(first.get_states())
    for grad in GRADIENTS[2:]:
        resumed.update(0, weight, grad.astype(dtype))
    np.testing.assert_array_equal(weight.astype(np.float64).reshape(-1),
                                  steps(built(name, kwargs), dtype)[-1])


@pytest.mark.filterwarnings("ignore:learning rate from")
@pytest.mark.parametrize("case, name, kwargs, dtype", OPTIMIZERS,
                         ids=[case[0] for case in OPTIMIZERS])
@pytest.mark.parametrize("size", [1, 5000], ids=["small", "large"])
def test_an_update_into_out_equals_the_update_in_place_and_keeps_the_weight(
        case, name, kwargs, dtype, size):
    if name == "sgld":
        pytest.skip("SGLD draws noise")
    in_place, into_out = built(name, kwargs), built(name, kwargs)
    moved = np.tile(WEIGHT.astype(dtype), size)
    kept = moved.copy()
    for grad in GRADIENTS:
        grad = np.tile(grad.astype(dtype), size)
        in_place.update(0, moved, grad)
        kept.flags.writeable = False  # out= must leave the weight it reads as it is
        out = np.empty_like(kept)
        into_out.update(0, kept, grad, out=out)
        np.testing.assert_array_equal(out, moved)
        kept = out


def test_an_update_into_out_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="out is float32"):
        optimizer.create("sgd").update(0, np.ones(3, np.float32), np.ones(3, np.float32),
                                       out=np.empty(4, np.float32))


@pytest.mark.parametrize("name, defaults", [
    ("nag", {"learning_rate": 0.01, "momentum": 0.0}),
    ("signum", {"learning_rate": 0.01, "momentum": 0.9, "wd_lh": 0.0}),
    ("ftml", {"learning_rate": 0.01, "beta1": 0.6, "beta2": 0.999, "epsilon": 1e-8}),
    ("lamb", {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6,
              "lower_bound": None, "upper_bound": None, "bias_correction": True}),
    ("adamax", {"learning_rate": 0.002, "beta1": 0.9, "beta2": 0.999}),
    ("adadelta", {"rho": 0.9, "epsilon": 1e-5}),
    ("adagrad", {"learning_rate": 0.01, "float_stable_eps": 1e-7}),
    ("rmsprop", {"learning_rate": 0.001, "gamma1": 0.9, "gamma2": 0.9, "epsilon": 1e-8,
                 "centered": False, "clip_weights": None}),
    ("ftrl", {"learning_rate": 0.1, "lamda1": 0.01, "beta": 1.0}),
    ("sgld", {"learning_rate": 0.01}),
])
def test_defaults_are_gluons(name, defaults):
    opt = optimizer.create(name)
    assert {key: getattr(opt, key) for key in defaults} == defaults


def test_sgld_adds_gaussian_noise_of_variance_lr_to_half_a_gradient_step():
    sgld = optimizer.create("sgld", learning_rate=0.04, wd=0.5)
    weight = np.ones(40000, np.float32)
    sgld.update(0, weight, np.full(40000, 2.0, np.float32))
    noise = weight - (1 - 0.04 / 2 * (2.0 + 0.5 * 1.0))
    assert abs(noise.mean()) < 0.003
    assert abs(noise.std() - math.sqrt(0.04)) < 0.003


def test_multi_precision_keeps_a_float32_copy_in_its_states():
    sgd = optimizer.create("sgd", learning_rate=0.1, multi_precision=True)
    weight = np.ones(3, np.float16)
    sgd.update("w", weight, np.full(3, 1e-3, np.float16))
    states = sgd.get_states()
    assert states["w/weight32"].dtype == np.float32
    assert states["w/weight32"].tolist() == pytest.approx([0.9999] * 3, rel=1e-6)
    assert weight.tolist() == [1.0] * 3  # float16 cannot hold 0.9999; the copy keeps it


def test_an_optimizer_written_for_gluon_trains_through_the_trainer():
    @optimizer.register
    class HeavyBall(optimizer.Optimizer):
        def __init__(self, momentum=0.5, **kwargs):
            super().__init__(**kwargs)
            self.momentum = momentum

        def create_state(self, index, weight):
            return nd.zeros(weight.shape)

        def update(self, index, weight, grad, state):
            self._update_count(index)
            lr, wd = self._get_lr(index), self._get_wd(index)
            state[:] = self.momentum * state + grad * self.rescale_grad + wd * weight
            weight[:] -= lr * state

    w = gluon.Parameter("w", shape=(2,), init="ones")
    w.initialize()
    trainer = gluon.Trainer([w], "heavyball", {"learning_rate": 0.1, "wd": 0.5})
    for _ in range(2):
        with autograd.record():
            loss = (w.data() * 2).sum()
        loss.backward()
        trainer.step(1)
    # step 1: v = 2 + 0.5 = 2.5, w = 0.75; step 2: v = 1.25 + 2 + 0.375 = 3.625, w = 0.3875
    np.testing.assert_allclose(w.data().asnumpy(), [0.3875, 0.3875], rtol=1e-6)
    assert trainer.optimizer.num_update == 2
