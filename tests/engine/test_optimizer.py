"""Optimizers: Gluon's update rules (spec 6.2), the registry, and optimizers travelling as data."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore import optimizer


def weight_after(opt: optimizer.Optimizer, start: list, grads: list) -> list:
    weight = np.array(start, dtype=np.float32)
    for grad in grads:
        opt.update(0, weight, np.array(grad, dtype=np.float32))
    return weight.tolist()


# ---- the registry ----------------------------------------------------------------------------
def test_create_builds_a_registered_optimizer_by_name_in_any_case():
    assert type(optimizer.create("SGD", learning_rate=0.1)) is optimizer.SGD
    assert type(optimizer.create("adam")) is optimizer.Adam


def test_create_rejects_an_unknown_name_as_gluon_does():
    with pytest.raises(ValueError, match="^Cannot find optimizer nosuchopt$"):
        optimizer.create("nosuchopt")


def test_create_rejects_a_wrong_keyword_as_gluon_does():
    with pytest.raises(TypeError) as caught:
        optimizer.create("sgd", lr=0.1)
    assert str(caught.value) == "Optimizer.__init__() got an unexpected keyword argument 'lr'"


def test_sgd_defaults_are_gluons():
    sgd = optimizer.create("sgd")
    assert (sgd.learning_rate, sgd.wd, sgd.momentum, sgd.clip_gradient) == (0.01, 0.0, 0.0, None)
    assert sgd.rescale_grad == 1.0


def test_adam_defaults_are_gluons():
    adam = optimizer.create("adam")
    assert (adam.learning_rate, adam.beta1, adam.beta2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-8)


def test_a_registered_subclass_is_created_by_its_lower_cased_name():
    @optimizer.register
    class HalfStep(optimizer.Optimizer):
        def _apply(self, weight, grad, state, lr, wd, count):
            weight -= 0.5 * lr * grad

    assert weight_after(optimizer.create("halfstep", learning_rate=1.0), [1.0], [[1.0]]) == [0.5]


def test_register_refuses_a_class_that_is_not_an_optimizer():
    with pytest.raises(TypeError, match="Can only register subclass of Optimizer"):
        optimizer.register(dict)


def test_a_hyper_parameter_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError, match="learning_rate must be a finite number, got 'fast'"):
        optimizer.create("sgd", learning_rate="fast")


def test_a_negative_clip_gradient_is_refused():
    with pytest.raises(ValueError, match="clip_gradient must be None or >= 0"):
        optimizer.create("sgd", clip_gradient=-1.0)


def test_set_learning_rate_changes_the_learning_rate():
    sgd = optimizer.create("sgd", learning_rate=0.1)
    sgd.set_learning_rate(0.5)
    assert sgd.learning_rate == 0.5


# ---- SGD (spec 6.2) --------------------------------------------------------------------------
def test_sgd_steps_against_the_gradient():
    assert weight_after(optimizer.create("sgd", learning_rate=0.5), [1.0, 2.0], [[2.0, -2.0]]) == [
        0.0, 3.0]


def test_sgd_weight_decay_pulls_the_weight_toward_zero():
    sgd = optimizer.create("sgd", learning_rate=0.1, wd=0.5)
    assert weight_after(sgd, [2.0], [[1.0]]) == pytest.approx([1.8])


def test_sgd_momentum_accumulates_velocity():
    sgd = optimizer.create("sgd", learning_rate=1.0, momentum=0.9)
    weight = np.zeros(1, dtype=np.float32)
    seen = []
    for _ in range(3):
        sgd.update(0, weight, np.ones(1, dtype=np.float32))
        seen.append(round(float(weight[0]), 5))
    assert seen == [-1.0, -2.9, -5.61]


def test_sgd_rescales_then_clips_the_gradient():
    sgd = optimizer.create("sgd", learning_rate=1.0, clip_gradient=0.5, rescale_grad=0.5)
    assert weight_after(sgd, [0.0], [[10.0]]) == [-0.5]


def test_sgd_with_momentum_weight_decay_and_clipping_follows_the_formula():
    lr, momentum, wd, clip = 0.1, 0.9, 0.01, 1.0
    start = np.array([0.5, -1.0, 2.0])
    grads = [np.array([3.0, -0.2, 0.4]), np.array([-5.0, 0.1, 0.3])]
    sgd = optimizer.create("sgd", learning_rate=lr, momentum=momentum, wd=wd, clip_gradient=clip)
    got = weight_after(sgd, start.tolist(), [g.tolist() for g in grads])
    weight, velocity = start.copy(), np.zeros(3)
    for grad in grads:
        velocity = momentum * velocity - lr * (np.clip(grad, -clip, clip) + wd * weight)
        weight = weight + velocity
    np.testing.assert_allclose(got, weight, rtol=1e-6)


def test_update_leaves_the_gradient_unchanged():
    grad = np.array([1.0, -2.0], dtype=np.float32)
    optimizer.create("sgd", momentum=0.5, rescale_grad=0.25).update(
        0, np.zeros(2, dtype=np.float32), grad
    )
    assert grad.tolist() == [1.0, -2.0]


def test_update_refuses_a_gradient_of_another_shape():
    with pytest.raises(ValueError, match=r"gradient of shape \(3,\) for the weight 0 of shape"):
        optimizer.create("sgd").update(0, np.zeros(2, np.float32), np.zeros(3, np.float32))


# ---- multipliers -----------------------------------------------------------------------------
class Holder:
    """What the Trainer puts in `param_dict`: something with lr_mult and wd_mult."""

    def __init__(self, lr_mult: float = 1.0, wd_mult: float = 1.0) -> None:
        self.lr_mult, self.wd_mult = lr_mult, wd_mult


def test_param_dict_multipliers_are_read_at_every_update():
    holder = Holder()
    sgd = optimizer.create("sgd", learning_rate=0.1, param_dict={0: holder})
    weight = np.zeros(1, dtype=np.float32)
    sgd.update(0, weight, np.ones(1, dtype=np.float32))
    holder.lr_mult = 10.0
    sgd.update(0, weight, np.ones(1, dtype=np.float32))
    assert weight.tolist() == pytest.approx([-1.1])


def test_wd_mult_scales_weight_decay_per_key():
    sgd = optimizer.create("sgd", learning_rate=1.0, wd=0.5, wd_mult={"bias": 0.0})
    assert weight_after(sgd, [2.0], [[0.0]]) == [1.0]
    bias = np.array([2.0], dtype=np.float32)
    sgd.update("bias", bias, np.zeros(1, dtype=np.float32))
    assert bias.tolist() == [2.0]


def test_set_lr_mult_scales_the_learning_rate_of_named_keys():
    sgd = optimizer.create("sgd", learning_rate=1.0)
    sgd.set_lr_mult({"dense0_weight": 0.5})
    weight = np.zeros(1, dtype=np.float32)
    sgd.update("dense0_weight", weight, np.ones(1, dtype=np.float32))
    assert weight.tolist() == [-0.5]


# ---- Adam ------------------------------------------------------------------------------------
def test_adam_first_step_moves_each_weight_by_about_the_learning_rate():
    adam = optimizer.create("adam", learning_rate=0.1)
    # Gluon 1.9.1 prints exactly these values for this step (spec e07b).
    assert weight_after(adam, [[0.0, 0.0]], [[[1.0, -3.0]]]) == [
        [-0.10000062733888626, 0.10000064969062805]]


def reference_adam(weight, grads, lr, beta1, beta2, epsilon, wd, clip, rescale):
    mean, var = np.zeros_like(weight), np.zeros_like(weight)
    for t, grad in enumerate(grads, start=1):
        g = np.clip(rescale * grad + wd * weight, -clip, clip)
        mean = beta1 * mean + (1 - beta1) * g
        var = beta2 * var + (1 - beta2) * g * g
        step_lr = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        weight = weight - step_lr * mean / (np.sqrt(var) + epsilon)
    return weight


def test_adam_follows_gluons_rule_with_bias_correction_in_the_learning_rate():
    rng = np.random.default_rng(1)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) * 2 for _ in range(5)]
    settings_ = dict(learning_rate=0.01, wd=0.1, clip_gradient=0.5, rescale_grad=0.25)
    got = weight_after(optimizer.create("adam", **settings_), start.tolist(),
                       [g.tolist() for g in grads])
    expected = reference_adam(start, grads, 0.01, 0.9, 0.999, 1e-8, 0.1, 0.5, 0.25)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ---- travelling as data ----------------------------------------------------------------------
def test_dumps_is_the_name_and_the_constructor_arguments():
    text = optimizer.create("sgd", learning_rate=0.1, momentum=0.9).dumps()
    name, kwargs = json.loads(text)
    assert name == "sgd"
    assert kwargs == {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.0, "rescale_grad": 1.0,
                      "clip_gradient": None}


@pytest.mark.parametrize("name, kwargs", [
    ("sgd", {"learning_rate": 0.2, "momentum": 0.5, "wd": 1e-4, "clip_gradient": 2.0}),
    ("adam", {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6}),
    ("sgd", {"lr_mult": {"dense0_bias": 2.0}, "wd_mult": {"dense0_bias": 0.0}}),
])
def test_create_from_json_rebuilds_the_same_optimizer(name, kwargs):
    original = optimizer.create(name, **kwargs)
    rebuilt = optimizer.create_from_json(original.dumps())
    assert type(rebuilt) is type(original)
    assert rebuilt.dumps() == original.dumps()


@pytest.mark.parametrize("text", [
    "not json", '{"name": "sgd"}', '["sgd"]', '["sgd", {}, {}]', '[1, {}]',
    "__import__('os').system('true')",
])
def test_create_from_json_refuses_anything_but_name_and_kwargs(text):
    with pytest.raises(ValueError):
        optimizer.create_from_json(text)


def test_create_from_json_refuses_an_unregistered_name():
    with pytest.raises(ValueError, match="Cannot find optimizer pickle"):
        optimizer.create_from_json('["pickle", {}]')


def test_create_from_json_refuses_an_unknown_keyword():
    with pytest.raises(TypeError, match="unexpected keyword argument 'module'"):
        optimizer.create_from_json('["sgd", {"module": "os"}]')


# ---- state as plain arrays -------------------------------------------------------------------
def test_get_states_names_each_keys_state_arrays():
    adam = optimizer.create("adam")
    adam.update("w", np.zeros(2, np.float32), np.ones(2, np.float32))
    states = adam.get_states()
    assert sorted(states) == ["num_update", "w/count", "w/mean", "w/var"]
    assert all(isinstance(array, np.ndarray) for array in states.values())


def test_get_states_returns_copies():
    sgd = optimizer.create("sgd", momentum=0.9)
    weight = np.zeros(1, np.float32)
    sgd.update(0, weight, np.ones(1, np.float32))
    snapshot = sgd.get_states()["0/momentum"].copy()
    sgd.get_states()["0/momentum"][:] = 100
    sgd.update(0, weight, np.ones(1, np.float32))
    assert sgd.get_states()["0/momentum"].tolist() == (snapshot * 0.9 - 0.01).tolist()


@given(
    name=st.sampled_from(["sgd", "adam"]),
    before=st.integers(1, 4),
    after=st.integers(1, 3),
    key=st.sampled_from([0, 7, "dense0_weight"]),
)
@settings(max_examples=25, deadline=None)
def test_an_optimizer_rebuilt_from_json_and_states_resumes_exactly(name, before, after, key):
    rng = np.random.default_rng(before * 10 + after)
    grads = rng.standard_normal((before + after, 3, 2)).astype(np.float32)
    kwargs = {"learning_rate": 0.05, "momentum": 0.9} if name == "sgd" else {"wd": 0.01}
    original = optimizer.create(name, **kwargs)
    weight = np.ones((3, 2), np.float32)
    for grad in grads[:before]:
        original.update(key, weight, grad)
    resumed = optimizer.create_from_json(original.dumps())
    resumed.set_states(original.get_states())
    resumed_weight = weight.copy()
    for grad in grads[before:]:
        original.update(key, weight, grad)
        resumed.update(key, resumed_weight, grad)
    assert np.array_equal(weight, resumed_weight)
    assert resumed.num_update == original.num_update == before + after


def test_set_states_refuses_a_state_the_optimizer_does_not_keep():
    with pytest.raises(ValueError, match="SGD keeps no state named '0/mean'"):
        optimizer.create("sgd", momentum=0.9).set_states({"0/mean": np.zeros(1)})


def test_set_states_refuses_an_incomplete_key():
    with pytest.raises(ValueError, match=r"state of 'w' is missing \['var'\]"):
        optimizer.create("adam").set_states({"w/mean": np.zeros(1), "w/count": np.array(1)})


def test_states_survive_a_safetensors_file(tmp_path):
    adam = optimizer.create("adam", learning_rate=0.01)
    weight = np.ones(3, np.float32)
    adam.update("w", weight, np.array([1.0, -1.0, 0.5], np.float32))
    optimizer.save_states(tmp_path / "adam.states", adam)
    loaded = optimizer.load_states(tmp_path / "adam.states")
    assert loaded.dumps() == adam.dumps()
    for entry, array in adam.get_states().items():
        assert np.array_equal(loaded.get_states()[entry], array)


OPTIMIZER_NAMES = ["sgd", "adam", "nag", "signum", "ftml", "lamb", "sgld", "adamax", "adadelta",
                   "adagrad", "rmsprop", "ftrl"]
WIRE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
    st.text(max_size=3), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([["FactorScheduler", {"step": 1}], ["FactorScheduler", {"step": "x"}]]),
)


@st.composite
def optimizer_json(draw: st.DrawFn) -> str:
    """Any settings a client may send for a registered optimizer, as `create_from_json` gets
    them: the names its `dumps()` writes and those only its constructor takes."""
    name = draw(st.sampled_from(OPTIMIZER_NAMES))
    names = sorted(json.loads(optimizer.create(name).dumps())[1]) + [
        "lr_scheduler", "begin_num_update", "multi_precision"]
    chosen = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    return json.dumps([name, {setting: draw(WIRE_VALUES) for setting in chosen}])


@settings(max_examples=200, deadline=None)
@given(text=optimizer_json())
def test_settings_from_the_wire_build_an_optimizer_that_steps_or_are_refused(text: str) -> None:
    # The server refuses what does not build (TypeError, ValueError) and fails the step of
    # what cannot update (out-of-range arithmetic) for every worker alike.
    with np.errstate(all="ignore"):
        try:
            built = optimizer.create_from_json(text)
        except (TypeError, ValueError):
            return
        weight = np.ones(3, np.float32)
        try:
            for _ in range(2):
                built.update("w", weight, np.ones(3, np.float32), out=np.empty_like(weight))
        except (ArithmeticError, ValueError):
            pass
    assert optimizer.copy_of(built).dumps() == built.dumps()  # as a snapshot keeps it
