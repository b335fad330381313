"""Initializers: JSON round trips, registry, dispatch and what each one writes (GLUON_SPEC 4)."""

import json
import logging
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore import checkpoint, init, initializer, nd, random
from paramstore.init import InitDesc

LEGACY_WARNING = (
    "\x1b[91mCalling initializer with init(str, NDArray) has been deprecated."
    "please use init(mx.init.InitDesc(...), NDArray) instead.\x1b[0m"
)


class Recorder(init.Initializer):
    """Writes a different number from each hook and remembers which hooks ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def _hook(self, hook: str, value: float, name: str, arr: nd.NDArray) -> None:
        self.calls.append((hook, str(name)))
        arr[:] = value

    def _init_weight(self, name, arr):
        self._hook("_init_weight", 1, name, arr)

    def _init_bias(self, name, arr):
        self._hook("_init_bias", 2, name, arr)

    def _init_gamma(self, name, arr):
        self._hook("_init_gamma", 3, name, arr)

    def _init_beta(self, name, arr):
        self._hook("_init_beta", 4, name, arr)

    def _init_default(self, name, arr):
        self._hook("_init_default", 5, name, arr)

    def _init_zero(self, name, arr):
        self._hook("_init_zero", 0, name, arr)

    def _init_one(self, name, arr):
        self._hook("_init_one", 1, name, arr)


def filled(ini, shape, name="x_weight", chosen=None):
    """`ini` applied to a zero array of `shape`, the way a Gluon Parameter calls it."""
    arr = nd.zeros(shape)
    if chosen is None:
        ini(InitDesc(name), arr)
    else:
        ini(InitDesc(name, {"__init__": chosen}), arr)
    return arr.asnumpy()


# ---- dumps, equality, the registry ------------------------------------------------------------
@pytest.mark.parametrize("ini, text", [
    (init.Uniform(), '["uniform", {"scale": 0.07}]'),
    (init.Uniform(0.1), '["uniform", {"scale": 0.1}]'),
    (init.Normal(), '["normal", {"sigma": 0.01}]'),
    (init.Zero(), '["zero", {}]'),
    (init.One(), '["one", {}]'),
    (init.Constant(0.5), '["constant", {"value": 0.5}]'),
    (init.Constant(nd.array([1, 2])), '["constant", {"value": [1.0, 2.0]}]'),
    (init.Constant(np.array([[1.0, 2.0]])), '["constant", {"value": [[1.0, 2.0]]}]'),
    (init.Xavier(), '["xavier", {"rnd_type": "uniform", "factor_type": "avg", "magnitude": 3}]'),
    (init.Xavier("gaussian", "in", 2.34),
     '["xavier", {"rnd_type": "gaussian", "factor_type": "in", "magnitude": 2.34}]'),
    (init.MSRAPrelu(), '["msraprelu", {"factor_type": "avg", "slope": 0.25}]'),
    (init.MSRAPrelu("in", 0.1), '["msraprelu", {"factor_type": "in", "slope": 0.1}]'),
    (init.Orthogonal(), '["orthogonal", {"scale": 1.414, "rand_type": "uniform"}]'),
    (init.Orthogonal(0.5, "normal"), '["orthogonal", {"scale": 0.5, "rand_type": "normal"}]'),
    (init.Bilinear(), '["bilinear", {}]'),
    (init.LSTMBias(), '["lstmbias", {"forget_bias": 1.0}]'),
    (init.LSTMBias(2.0), '["lstmbias", {"forget_bias": 2.0}]'),
    (init.FusedRNN(init.Xavier(), 4, 1, "lstm"),
     '["fusedrnn", {"init": "[\\"xavier\\", {\\"rnd_type\\": \\"uniform\\", \\"factor_type\\": '
     '\\"avg\\", \\"magnitude\\": 3}]", "num_hidden": 4, "num_layers": 1, "mode": "lstm", '
     '"bidirectional": false, "forget_bias": 1.0}]'),
    (init.FusedRNN(None, 4, 1, "gru", True, 0.5),
     '["fusedrnn", {"init": null, "num_hidden": 4, "num_layers": 1, "mode": "gru", '
     '"bidirectional": true, "forget_bias": 0.5}]'),
    (init.Initializer(a=1), '["initializer", {"a": 1}]'),
])
def test_dumps_is_class_name_and_constructor_kwargs(ini, text):
    assert ini.dumps() == text


def test_subclass_dumps_the_kwargs_it_passes_up():
    class MyInit(init.Initializer):
        def __init__(self, k):
            super().__init__(k=k)

    assert MyInit(3).dumps() == '["myinit", {"k": 3}]'


def test_mixed_and_load_have_no_dumps():
    assert not hasattr(init.Mixed([".*"], [init.One()]), "dumps")
    assert not hasattr(init.Load({}), "dumps")


def test_equal_means_same_class_and_same_kwargs():
    assert init.Xavier() == init.Xavier()
    assert init.Xavier() != init.Xavier(magnitude=2)
    assert init.Zero() != init.One()
    assert init.Constant(nd.array([1, 2])) == init.Constant([1.0, 2.0])
    assert init.Uniform() != "uniform"


def test_registered_names_are_the_lower_cased_classes_and_aliases():
    assert init.registered_names() == [
        "bilinear", "constant", "fusedrnn", "lstmbias", "msraprelu", "normal", "one", "ones",
        "orthogonal", "uniform", "xavier", "zero", "zeros",
    ]


def test_initializer_module_is_the_same_api_as_init():
    assert initializer.Xavier is init.Xavier
    assert initializer.create is init.create
    assert initializer.InitDesc is init.InitDesc


@pytest.mark.parametrize("spec, expected", [
    ("xavier", init.Xavier()),
    ("zeros", init.Zero()),
    ("ones", init.One()),
    ("Uniform", init.Uniform()),
    ('["normal", {"sigma": 0.5}]', init.Normal(0.5)),
    ('{"initializer": "constant", "value": 3}', init.Constant(3)),
    ({"initializer": "normal", "sigma": 0.3}, init.Normal(0.3)),
])
def test_create_accepts_names_and_json(spec, expected):
    assert init.create(spec) == expected
    assert type(init.create(spec)) is type(expected)


def test_create_passes_keyword_arguments_to_a_named_class():
    assert init.create("normal", sigma=0.3) == init.Normal(0.3)


def test_create_returns_an_instance_unchanged():
    ini = init.Xavier()
    assert init.create(ini) is ini


def test_create_unknown_name_is_an_assertion_error_naming_it():
    with pytest.raises(AssertionError) as error:
        init.create("Foo")
    assert str(error.value) == (
        "foo is not registered. Please register with initializer.register first"
    )


@pytest.mark.parametrize("value", [None, 3, init.Mixed([".*"], [init.One()]), init.Load({})])
def test_create_rejects_values_that_are_not_strings_or_initializers(value):
    with pytest.raises(AssertionError, match="^initializer must be of string type$"):
        init.create(value)


def test_create_rejects_arguments_for_an_instance():
    with pytest.raises(AssertionError, match="already an instance"):
        init.create(init.One(), value=3)


@pytest.mark.parametrize("text", ['["normal"]', '["normal", 0.5]', "[1, 2, 3]", "[oops", "{"])
def test_create_rejects_malformed_json(text):
    with pytest.raises(ValueError):
        init.create(text)


def test_create_rejects_json_object_without_initializer_key():
    with pytest.raises(AssertionError, match="must be of string type"):
        init.create('{"value": 3}')


def test_create_rejects_kwargs_the_class_does_not_take():
    with pytest.raises(TypeError):
        init.create('["uniform", {"scale": 1, "__class__": "os.system"}]')


def test_create_reports_json_nested_too_deeply_as_value_error():
    with pytest.raises(ValueError):
        init.create("[" * 100_000)


@pytest.fixture
def own_registry(monkeypatch):
    """Registrations made by a test do not outlive it."""
    monkeypatch.setattr(init, "_REGISTRY", dict(init._REGISTRY))


def test_register_makes_a_custom_class_creatable_by_name(own_registry):
    @init.register
    class MyInit(init.Initializer):
        def __init__(self, k=1):
            super().__init__(k=k)

    assert "myinit" in init.registered_names()
    assert init.create('["myinit", {"k": 3}]') == MyInit(3)
    assert init.create("MyInit", k=2) == MyInit(2)


def test_register_rejects_a_class_that_is_not_an_initializer(own_registry):
    with pytest.raises(TypeError, match="subclass of Initializer"):
        init.register(dict)


def test_register_warns_when_a_name_is_taken_over(own_registry):
    with pytest.warns(UserWarning, match="overriding existing initializer"):
        @init.register
        class Xavier(init.Initializer):
            pass


# ---- dispatch ---------------------------------------------------------------------------------
def test_init_attribute_runs_only_init_weight_of_the_chosen_initializer():
    chosen, fallback = Recorder(), Recorder()
    for name in ["dense0_weight", "custom0_bias", "custom0_gamma", "custom0_other"]:
        arr = nd.zeros((2,))
        fallback(InitDesc(name, {"__init__": chosen}), arr)
        assert arr.asnumpy().tolist() == [1.0, 1.0]
    assert [hook for hook, _ in chosen.calls] == ["_init_weight"] * 4
    assert fallback.calls == []


@pytest.mark.parametrize("chosen, value", [
    ("ones", 1.0), ("Zeros", 0.0), ('["constant", {"value": 7}]', 7.0), (init.Constant(9), 9.0),
])
def test_init_attribute_resolves_strings_and_instances(chosen, value):
    assert filled(init.Uniform(), (2,), "fc_bias", chosen).tolist() == [value, value]


def test_first_initializer_called_becomes_the_global_init():
    fallback = init.Uniform()
    desc = InitDesc("q", {"__init__": "ones"})
    assert desc.global_init is None and InitDesc("q").attrs == {}
    fallback(desc, nd.zeros((2,)))
    assert desc.global_init is fallback


@pytest.mark.parametrize("name, hook", [
    ("fc_weight", "_init_weight"), ("fc_bias", "_init_bias"), ("bn_gamma", "_init_gamma"),
    ("bn_beta", "_init_beta"), ("bn_moving_mean", "_init_default"),
    ("bn_moving_var", "_init_default"), ("bn_running_mean", "_init_default"),
    ("bn_running_var", "_init_default"), ("foo_min", "_init_zero"), ("foo_max", "_init_one"),
    ("foo", "_init_default"), ("weightfoo", "_init_default"),
])
def test_init_desc_without_init_attribute_dispatches_on_the_name_ending(name, hook):
    recorder = Recorder()
    recorder(InitDesc(name), nd.zeros((2,)))
    assert recorder.calls == [(hook, name)]


def test_quantized_bias_is_zero_and_quantized_weight_one_int8_value():
    assert filled(init.Uniform(), (4,), "x_bias_quantize").tolist() == [0.0] * 4
    weight = filled(init.Uniform(), (4,), "x_weight_quantize")
    assert len(set(weight.tolist())) == 1 and -127 <= weight[0] < 127


@pytest.mark.parametrize("name, hook", [
    ("fc_weight", "_init_weight"), ("fc_bias", "_init_bias"), ("bn_moving_mean", "_init_zero"),
    ("bn_moving_var", "_init_one"), ("bn_moving_inv_var", "_init_zero"),
    ("bn_moving_avg", "_init_zero"), ("foo", "_init_default"),
])
def test_plain_string_name_takes_the_legacy_path(name, hook):
    recorder = Recorder()
    with pytest.warns(DeprecationWarning) as caught:
        recorder(name, nd.zeros((1, 1, 2, 2)))
    assert str(caught[0].message) == LEGACY_WARNING
    assert recorder.calls == [(hook, name)]


def test_legacy_path_fills_upsampling_with_bilinear_and_stn_loc_bias_with_identity():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        up, loc = nd.zeros((1, 1, 2, 2)), nd.zeros((6,))
        init.Uniform()("upsampling0_weight", up)
        init.Uniform()("stn_loc_bias", loc)
    assert up.asnumpy().tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
    assert loc.asnumpy().tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_base_default_hook_explains_the_known_patterns():
    with pytest.raises(ValueError) as error:
        init.Uniform()(InitDesc("foo"), nd.zeros((2,)))
    assert str(error.value) == (
        'Unknown initialization pattern for foo. Default initialization is now limited to '
        '"weight", "bias", "gamma" (1.0), and "beta" (0.0).Please use '
        "mx.sym.Variable(init=mx.init.*) to set initialization pattern"
    )


def test_base_initializer_must_override_init_weight():
    with pytest.raises(NotImplementedError, match="^Must override it$"):
        init.Initializer()(InitDesc("z_weight"), nd.zeros((2,)))


def test_d2l_style_custom_initializer_writes_in_place():
    class MyInit(init.Initializer):
        def _init_weight(self, name, data):
            data[:] = nd.random.uniform(low=-10, high=10, shape=data.shape)
            data *= data.abs() >= 5

    values = filled(init.Uniform(), (64, 20), "dense0_weight", MyInit())
    kept = values[values != 0]
    assert kept.size > 0 and np.all(np.abs(kept) >= 5) and np.all(np.abs(values) <= 10)


# ---- verbose ----------------------------------------------------------------------------------
def test_verbose_logs_name_chosen_initializer_and_rms(caplog):
    fallback = init.Zero().set_verbosity(True)
    with caplog.at_level(logging.INFO):
        fallback(InitDesc("vb_weight", {"__init__": init.One()}), nd.zeros((2, 3)))
        fallback(InitDesc("vb_bias", {"__init__": "zeros"}), nd.zeros((2,)))
        fallback(InitDesc("vb_gamma"), nd.zeros((2,)))
    assert [r.levelno for r in caplog.records] == [logging.INFO] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("Initialized vb_weight as <paramstore.init.One object at 0x")
    assert messages[0].endswith(">: 1.0")
    assert messages[1:] == [
        "Initialized vb_bias as zeros: 0.0", "Initialized vb_gamma as gamma: 1.0",
    ]


def test_verbose_uses_a_custom_print_func(caplog):
    ini = init.Constant(2).set_verbosity(True, print_func=lambda x: f"sum={x.sum().asscalar()}")
    with caplog.at_level(logging.INFO):
        ini(InitDesc("vb2_weight", {"__init__": "ones"}), nd.zeros((2,)))
    assert caplog.records[0].getMessage() == "Initialized vb2_weight as ones: sum=2.0"


def test_not_verbose_logs_nothing(caplog):
    with caplog.at_level(logging.INFO):
        filled(init.One(), (2,))
    assert caplog.records == []


# ---- what each initializer writes --------------------------------------------------------------
@pytest.fixture
def seeded():
    random.seed(1)


def assert_uniform(values, bound):
    assert abs(values.mean()) < 0.05 * bound
    assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert -bound <= values.min() < -0.99 * bound and 0.99 * bound < values.max() <= bound


def assert_normal(values, sigma):
    assert abs(values.mean()) < 0.1 * sigma
    assert values.std() == pytest.approx(sigma, rel=0.05)


# A (256, 20) weight: fan_in 20, fan_out 256, their mean 138 (GLUON_SPEC e05_init).
@pytest.mark.parametrize("ini, bound", [
    (init.Uniform(), 0.07),
    (init.Uniform(0.5), 0.5),
    (init.Xavier(), math.sqrt(3 / 138)),
    (init.Xavier(factor_type="in"), math.sqrt(3 / 20)),
    (init.Xavier(factor_type="out"), math.sqrt(3 / 256)),
    (init.Xavier("uniform", "avg", 6), math.sqrt(6 / 138)),
])
def test_uniform_draws_fill_plus_minus_their_bound(seeded, ini, bound):
    assert_uniform(filled(ini, (256, 20)), bound)


@pytest.mark.parametrize("ini, sigma", [
    (init.Normal(), 0.01),
    (init.Normal(0.5), 0.5),
    (init.Xavier("gaussian", "avg", 3), math.sqrt(3 / 138)),
    (init.Xavier("gaussian", "in", 2), math.sqrt(2 / 20)),
    (init.MSRAPrelu(), math.sqrt(2 / 1.0625 / 138)),
    (init.MSRAPrelu("in", 0), math.sqrt(2 / 20)),
])
def test_gaussian_draws_have_their_sigma(seeded, ini, sigma):
    assert_normal(filled(ini, (256, 20)), sigma)


def test_xavier_counts_the_kernel_in_both_fans(seeded):
    # (64, 3, 3, 3): fan_in 3*9 = 27, fan_out 64*9 = 576.
    assert_uniform(filled(init.Xavier(), (64, 3, 3, 3)), math.sqrt(3 / ((27 + 576) / 2)))


def test_msraprelu_is_xavier_gaussian_with_its_magnitude():
    random.seed(5)
    msra = filled(init.MSRAPrelu("in", 0), (16, 8))
    random.seed(5)
    assert np.array_equal(msra, filled(init.Xavier("gaussian", "in", 2), (16, 8)))


def test_xavier_on_a_vector_asks_for_2d():
    with pytest.raises(ValueError) as error:
        init.Uniform()(InitDesc("foo_bias", {"__init__": init.Xavier()}), nd.zeros((4,)))
    assert str(error.value) == (
        "Xavier initializer cannot be applied to vector foo_bias. It requires at least 2D."
    )


@pytest.mark.parametrize("ini, message", [
    (init.Xavier(factor_type="x"), "^Incorrect factor type$"),
    (init.Xavier(rnd_type="x"), "^Unknown random type$"),
    (init.Orthogonal(rand_type="x"), "^Unknown random type$"),
])
def test_unknown_types_fail_when_filling(ini, message):
    with pytest.raises(ValueError, match=message):
        filled(ini, (2, 2))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_random_fill_keeps_the_array_dtype(dtype):
    arr = nd.zeros((3, 4), dtype=dtype)
    init.Normal(1.0)(InitDesc("w_weight"), arr)
    assert arr.dtype is np.dtype(dtype).type and arr.asnumpy().std() > 0


def test_constant_fills_a_scalar_an_array_or_a_broadcast_row():
    assert filled(init.Constant(0.3), (2,)).tolist() == pytest.approx([0.3, 0.3])
    grid = nd.array([[1, 2], [3, 4]])
    assert filled(init.Constant(grid), (2, 2)).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert filled(init.Constant([1.0, 2.0, 3.0]), (2, 3)).tolist() == [[1.0, 2.0, 3.0]] * 2


def test_zero_and_one():
    assert filled(init.Zero(), (2, 2), "x_gamma", "zeros").tolist() == [[0.0, 0.0]] * 2
    assert filled(init.One(), (3,)).tolist() == [1.0] * 3


@pytest.mark.parametrize("rand_type", ["uniform", "normal"])
def test_orthogonal_rows_are_orthogonal_with_norm_scale(rand_type):
    w = filled(init.Orthogonal(1.414, rand_type), (4, 6)).astype(np.float64)
    assert w @ w.T == pytest.approx(1.414**2 * np.eye(4), abs=1e-5)


def test_orthogonal_tall_matrix_has_orthonormal_columns_at_scale_one():
    w = filled(init.Orthogonal(1.0), (6, 4)).astype(np.float64)
    assert w.T @ w == pytest.approx(np.eye(4), abs=1e-5)


def test_orthogonal_flattens_trailing_dimensions():
    w = filled(init.Orthogonal(2.0), (3, 2, 2)).reshape(3, 4).astype(np.float64)
    assert w @ w.T == pytest.approx(4.0 * np.eye(3), abs=1e-5)


def test_bilinear_is_the_upsampling_filter():
    assert filled(init.Bilinear(), (1, 1, 4, 4)).tolist() == [[[
        [0.0625, 0.1875, 0.1875, 0.0625],
        [0.1875, 0.5625, 0.5625, 0.1875],
        [0.1875, 0.5625, 0.5625, 0.1875],
        [0.0625, 0.1875, 0.1875, 0.0625],
    ]]]
    assert filled(init.Bilinear(), (1, 1, 3, 3)).tolist() == [[[
        [0.0625, 0.1875, 0.1875], [0.1875, 0.5625, 0.5625], [0.1875, 0.5625, 0.5625],
    ]]]


def test_bilinear_repeats_the_filter_on_every_channel():
    values = filled(init.Bilinear(), (2, 3, 4, 4))
    assert all(np.array_equal(values[n, c], values[0, 0]) for n in range(2) for c in range(3))


def test_bilinear_needs_four_dimensions():
    with pytest.raises(ValueError, match="4-D"):
        filled(init.Bilinear(), (4, 4))


def test_lstm_bias_sets_the_forget_gate_quarter():
    assert filled(init.LSTMBias(), (8,)).tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert filled(init.LSTMBias(3.0), (10,)).tolist() == [0, 0, 3, 3, 0, 0, 0, 0, 0, 0]


def test_fused_rnn_lstm_fills_pieces_and_sets_forget_biases():
    # LSTM, 1 layer, 2 hidden, 3 inputs: 4*2*(3+2) weights, then 16 biases.
    fused = init.FusedRNN(init.Constant(0.5), num_hidden=2, num_layers=1, mode="lstm")
    values = filled(init.Uniform(), (56,), "rnn_parameters", fused)
    assert values[:40].tolist() == [0.5] * 40
    assert values[40:].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]


def test_fused_rnn_without_init_uses_the_global_initializer_with_suffix_dispatch():
    # Bidirectional GRU, 2 layers, 3 hidden, 4 inputs: weights (2*3*3*(4+3) + 2*3*3*(6+3)), then
    # 2 layers * 2 directions * 2 * 3 gates * 3 biases.
    fused = init.FusedRNN(None, num_hidden=3, num_layers=2, mode="gru", bidirectional=True)
    values = filled(init.One(), (288 + 72,), "rnn_parameters", fused)
    assert values[:288].tolist() == [1.0] * 288
    assert values[288:].tolist() == [0.0] * 72


def test_fused_rnn_names_its_pieces_by_layer_direction_and_gate():
    recorder = Recorder()
    filled(init.Uniform(), (56,), "rnn_parameters", init.FusedRNN(recorder, 2, 1, "lstm"))
    assert [name for _, name in recorder.calls] == [
        "l0_i2h_i_weight", "l0_i2h_f_weight", "l0_i2h_c_weight", "l0_i2h_o_weight",
        "l0_h2h_i_weight", "l0_h2h_f_weight", "l0_h2h_c_weight", "l0_h2h_o_weight",
        "l0_i2h_i_bias", "l0_i2h_c_bias", "l0_i2h_o_bias",
        "l0_h2h_i_bias", "l0_h2h_c_bias", "l0_h2h_o_bias",
    ]


def test_fused_rnn_accepts_its_init_as_json():
    # rnn_tanh, 2 hidden, 3 inputs: 2*(3+2) weights get the constant, 4 biases dispatch to 0.
    fused = init.FusedRNN('["constant", {"value": 2}]', 2, 1, "rnn_tanh")
    values = filled(init.Uniform(), (2 * (3 + 2) + 4,), "rnn_parameters", fused)
    assert values.tolist() == [2.0] * 10 + [0.0] * 4


def test_fused_rnn_rejects_a_size_that_does_not_split():
    with pytest.raises(ValueError, match="Invalid parameters size"):
        filled(init.Uniform(), (55,), "rnn", init.FusedRNN(None, 2, 1, "lstm"))


def test_fused_rnn_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="Unknown RNN mode 'foo'"):
        filled(init.Uniform(), (56,), "rnn", init.FusedRNN(None, 2, 1, "foo"))


# ---- Mixed and Load ---------------------------------------------------------------------------
def test_mixed_uses_the_first_matching_pattern():
    mixed = init.Mixed([".*bias", ".*"], [init.One(), init.Constant(3)])
    bias, weight = nd.zeros((2,)), nd.zeros((2, 2))
    with pytest.warns(DeprecationWarning):
        mixed("mx_bias", bias)
        mixed("mx_weight", weight)
    assert bias.asnumpy().tolist() == [0.0, 0.0]  # One's legacy dispatch: a bias is 0
    assert weight.asnumpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]


def test_mixed_without_a_match_suggests_a_catch_all_pattern():
    with pytest.raises(ValueError) as error:
        init.Mixed(["a"], [init.One()])("zzz", nd.zeros((1,)))
    assert str(error.value) == (
        'Parameter name %s did not match any pattern. Consideradd a ".*" pattern at the and '
        "with default Initializer."
    )


def test_mixed_needs_one_initializer_per_pattern():
    with pytest.raises(ValueError, match="one initializer per pattern"):
        init.Mixed(["a", "b"], [init.One()])


def test_load_strips_arg_and_aux_prefixes_and_copies():
    load = init.Load({"arg:w": nd.ones((2,)), "aux:m": nd.ones((2,)) * 2})
    assert sorted(load.param) == ["m", "w"]
    arr = nd.zeros((2,))
    load("w", arr)
    assert arr.asnumpy().tolist() == [1.0, 1.0]


def test_load_falls_back_to_default_init():
    arr = nd.zeros((2,))
    with pytest.warns(DeprecationWarning):
        init.Load({}, default_init=init.Constant(4))("other_weight", arr)
    assert arr.asnumpy().tolist() == [4.0, 4.0]


def test_load_reports_shape_mismatch():
    with pytest.raises(AssertionError) as error:
        init.Load({"w": nd.ones((2,))})("w", nd.zeros((3,)))
    assert str(error.value) == (
        "Parameter w cannot be initialized from loading. Shape mismatch, target (3,) vs loaded (2,)"
    )


def test_load_without_the_name_or_a_default_fails():
    with pytest.raises(AssertionError) as error:
        init.Load({})("w", nd.zeros((3,)))
    assert str(error.value) == (
        "Cannot Initialize w. Not found in loaded param and no default Initializer is provided."
    )


def test_load_reads_a_checkpoint_file(tmp_path):
    path = str(tmp_path / "saved.safetensors")
    checkpoint.save(path, {"arg:dense0_weight": np.full((2, 2), 7.0, dtype=np.float32)})
    arr = nd.zeros((2, 2))
    init.Load(path)("dense0_weight", arr)
    assert arr.asnumpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]


# ---- any registered initializer survives its own JSON ------------------------------------------
scales = st.floats(0.01, 10.0)
simple = st.one_of(
    st.builds(init.Zero), st.builds(init.One), st.builds(init.Uniform, scales),
    st.builds(init.Normal, scales), st.builds(init.Constant, scales),
)
BUILDERS = {
    init.Zero: st.builds(init.Zero),
    init.One: st.builds(init.One),
    init.Constant: st.builds(init.Constant, st.one_of(scales, st.lists(scales, min_size=6,
                                                                     max_size=6))),
    init.Uniform: st.builds(init.Uniform, scales),
    init.Normal: st.builds(init.Normal, scales),
    init.Xavier: st.builds(init.Xavier, st.sampled_from(["uniform", "gaussian"]),
                           st.sampled_from(["avg", "in", "out"]), scales),
    init.MSRAPrelu: st.builds(init.MSRAPrelu, st.sampled_from(["avg", "in", "out"]),
                              st.floats(0.0, 1.0)),
    init.Orthogonal: st.builds(init.Orthogonal, scales, st.sampled_from(["uniform", "normal"])),
    init.Bilinear: st.builds(init.Bilinear),
    init.LSTMBias: st.builds(init.LSTMBias, scales),
    init.FusedRNN: st.builds(init.FusedRNN, st.none() | simple, st.integers(1, 3),
                             st.integers(1, 2), st.sampled_from(["lstm", "gru", "rnn_relu"]),
                             st.booleans(), scales),
}


def fill_shape(ini):
    """A shape each initializer can fill: 4-D for Bilinear, a whole fused vector for FusedRNN."""
    if isinstance(ini, init.Bilinear):
        return (2, 1, 3, 4)
    if isinstance(ini, init.FusedRNN):
        kw = json.loads(ini.dumps())[1]
        h, layers, directions = kw["num_hidden"], kw["num_layers"], 1 + kw["bidirectional"]
        gates = {"lstm": 4, "gru": 3, "rnn_relu": 1}[kw["mode"]]
        block = directions * gates * h
        return (block * (2 + h) + (layers - 1) * block * (directions * h + h) + layers * 2 * block,)
    return (8, 6)


def test_property_covers_every_registered_class():
    names = {cls.__name__.lower() for cls in BUILDERS}
    assert names == set(init.registered_names()) - {"ones", "zeros"}


@settings(max_examples=60, deadline=None)
@given(st.one_of(*BUILDERS.values()), st.integers(0, 2**32 - 1))
def test_initializer_rebuilt_from_dumps_is_equal_and_fills_the_same(ini, seed):
    rebuilt = init.create(ini.dumps())
    assert rebuilt == ini and type(rebuilt) is type(ini)
    shape = fill_shape(ini)
    random.seed(seed)
    original_values = filled(init.Uniform(), shape, "p", ini)
    random.seed(seed)
    assert np.array_equal(filled(init.Uniform(), shape, "p", rebuilt), original_values)
