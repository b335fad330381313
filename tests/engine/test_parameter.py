"""Parameter, Constant and ParameterDict (spec 2 and 8; raw outputs e03, e09, e12)."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paramstore import autograd, cpu, gluon, init, nd
from paramstore.gluon import DeferredInitializationError, nn

pytestmark = pytest.mark.usefixtures("fresh_names")

NOT_INITIALIZED = (
    "Parameter 'w' has not been initialized. Note that you should initialize parameters and "
    "create Trainer with Block.collect_params() instead of Block.params because the later does "
    "not include Parameters of nested child Blocks"
)


def initialized(shape=(2, 3), value=1.0, **kwargs):
    param = gluon.Parameter("w", shape=shape, **kwargs)
    param.initialize(init.Constant(value))
    return param


def test_defaults():
    param = gluon.Parameter("w")
    assert (param.name, param.shape, param.dtype, param.grad_req) == ("w", None, np.float32,
                                                                     "write")
    assert (param.lr_mult, param.wd_mult, param.init) == (1.0, 1.0, None)


def test_dense_parameter_defaults():
    dense = nn.Dense(3)
    assert (dense.weight.shape, dense.weight.dtype, dense.weight.init) == ((3, 0), "float32", None)
    assert (dense.bias.shape, dense.bias.init) == ((3,), "zeros")


def test_an_int_shape_becomes_a_tuple():
    assert gluon.Parameter("w", shape=5).shape == (5,)


def test_an_unknown_grad_req_is_refused():
    with pytest.raises(AssertionError, match=(
        "^grad_req must be one of 'write', 'add', or 'null', but got 'foo'$"
    )):
        gluon.Parameter("w", grad_req="foo")


def test_a_non_differentiable_parameter_is_always_null():
    param = gluon.Parameter("w", differentiable=False)
    param.grad_req = "write"
    assert param.grad_req == "null"


@pytest.mark.parametrize("read", ["data", "grad", "list_data", "list_grad"])
def test_reading_before_initialize_raises_runtime_error(read):
    with pytest.raises(RuntimeError, match=f"^{re.escape(NOT_INITIALIZED)}$"):
        getattr(gluon.Parameter("w", shape=(2,)), read)()


def test_list_ctx_before_initialize_has_the_short_message():
    with pytest.raises(RuntimeError, match="^Parameter 'w' has not been initialized$"):
        gluon.Parameter("w").list_ctx()


def test_set_data_before_initialize_is_refused():
    with pytest.raises(AssertionError, match="^Parameter 'w' has not been initialized$"):
        gluon.Parameter("w", shape=(2,)).set_data(nd.ones((2,)))


def test_zero_grad_before_initialize_does_nothing():
    gluon.Parameter("w", shape=(2,)).zero_grad()


def test_initialize_creates_data_and_zero_grad_on_the_current_context():
    param = gluon.Parameter("w", shape=(2, 3))
    param.initialize()
    assert np.abs(param.data().asnumpy()).max() <= 0.07
    assert not param.grad().asnumpy().any()
    assert [a.shape for a in param.list_data()] == [(2, 3)]
    assert [g.shape for g in param.list_grad()] == [(2, 3)]
    assert param.list_ctx() == [cpu(0)]


def test_data_is_the_same_object_every_time():
    param = initialized()
    assert param.data() is param.data()
    param.data()[0, 0] = 100
    assert param.data().asnumpy()[0, 0] == 100


def test_initializing_again_warns_and_keeps_the_values():
    param = initialized(value=3.0)
    with pytest.warns(UserWarning, match=(
        "^Parameter 'w' is already initialized, ignoring. Set force_reinit=True to "
        "re-initialize.$"
    )):
        param.initialize(init.One())
    assert param.data().asnumpy().tolist() == [[3.0] * 3] * 2


def test_force_reinit_replaces_the_values():
    param = initialized(value=3.0)
    param.initialize(init.One(), force_reinit=True)
    assert param.data().asnumpy().tolist() == [[1.0] * 3] * 2


@pytest.mark.parametrize(("shape", "text"), [((2, 0), r"\(2, 0\)"), (None, "None")])
def test_unknown_shape_without_deferral_cannot_initialize(shape, text):
    with pytest.raises(ValueError, match=(
        f"^Cannot initialize Parameter 'u' because it has invalid shape: {text}.$"
    )):
        gluon.Parameter("u", shape=shape).initialize()


def test_own_init_beats_the_default_and_explicit_init_beats_both():
    param = gluon.Parameter("w", shape=(2,), init=init.Constant(5))
    param.initialize(default_init=init.One())
    assert param.data().asnumpy().tolist() == [5.0, 5.0]
    param.initialize(init.Constant(7), force_reinit=True)
    assert param.data().asnumpy().tolist() == [7.0, 7.0]


def test_a_registry_string_works_as_init():
    param = gluon.Parameter("w", shape=(2,), init='["constant", {"value": 7}]')
    param.initialize()
    assert param.data().asnumpy().tolist() == [7.0, 7.0]


def test_initialization_is_not_recorded():
    param = gluon.Parameter("w", shape=(2,))
    with autograd.record():
        param.initialize(init.One())
    assert param.data()._node.backward is None  # a leaf, not an op's output


def test_set_data_copies_into_the_same_array():
    param = initialized(shape=(2, 2))
    array = param.data()
    param.set_data(nd.full((2, 2), 3))
    assert param.data() is array and array.asnumpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]


def test_set_data_accepts_a_numpy_array():
    param = initialized(shape=(2, 2))
    param.set_data(np.full((2, 2), 5.0))
    assert param.data().asnumpy().tolist() == [[5.0, 5.0], [5.0, 5.0]]


@pytest.mark.parametrize(("shape", "text"), [((3, 2), r"\(3, 2\)"), ((4,), r"\(4,\)")])
def test_set_data_with_a_wrong_shape_is_refused(shape, text):
    param = initialized(shape=(2, 2))
    with pytest.raises(AssertionError, match=(
        rf"^Expected shape {text} is incompatible with given shape \(2, 2\)\.$"
    )):
        param.set_data(nd.ones(shape))


def test_set_data_with_a_python_scalar_fails_on_shape():
    with pytest.raises(AttributeError, match="'int' object has no attribute 'shape'"):
        initialized().set_data(3)


def test_shape_setter_fills_unknown_dims_and_refuses_changes():
    param = gluon.Parameter("w", shape=(2, 0))
    param.shape = (2, 5)
    assert param.shape == (2, 5)
    with pytest.raises(AssertionError, match=(
        r"^Expected shape \(3, 5\) is incompatible with given shape \(2, 5\)\.$"
    )):
        param.shape = (3, 5)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_shape_setter_accepts_any_fill_of_the_unknown_dims(known, data):
    unknown = [data.draw(st.booleans()) for _ in known]
    param = gluon.Parameter("w", shape=tuple(0 if u else d for u, d in zip(unknown, known)))
    param.shape = tuple(known)
    assert param.shape == tuple(known)


def test_grad_after_backward_and_zero_grad():
    param = initialized(shape=(3,))
    with autograd.record():
        y = (param.data() * 2).sum()
    y.backward()
    assert param.grad().asnumpy().tolist() == [2.0, 2.0, 2.0]
    param.zero_grad()
    assert param.grad().asnumpy().tolist() == [0.0, 0.0, 0.0]


def test_grad_req_add_accumulates_over_backward_calls():
    param = initialized(shape=(2,), grad_req="add")
    for _ in range(2):
        with autograd.record():
            y = (param.data() * 3).sum()
        y.backward()
    assert param.grad().asnumpy().tolist() == [6.0, 6.0]


def test_null_grad_req_has_no_gradient():
    param = initialized(shape=(3,))
    param.grad_req = "null"
    with pytest.raises(RuntimeError, match=(
        "^Cannot get gradient array for Parameter 'w' because grad_req='null'$"
    )):
        param.grad()
    param.zero_grad()  # a no-op, not an error


def test_back_from_null_grad_req_starts_with_zero_gradients():
    param = initialized(shape=(3,))
    param.grad_req = "null"
    param.grad_req = "add"
    assert param.grad().asnumpy().tolist() == [0.0, 0.0, 0.0]


def test_a_null_grad_req_parameter_is_not_differentiated():
    param = initialized(shape=(2,), grad_req="null")
    x = nd.ones((2,))
    x.attach_grad()
    with autograd.record():
        y = (param.data() * x).sum()
    y.backward()
    assert x.grad.asnumpy().tolist() == [1.0, 1.0]


def test_data_on_a_context_it_does_not_live_on():
    with pytest.raises(RuntimeError, match=(
        r"^Parameter 'w' was not initialized on context cpu\(1\)\. It was only initialized on "
        r"\[cpu\(0\)\]\.$"
    )):
        initialized().data(cpu(1))


def test_several_contexts_hold_independent_copies():
    param = gluon.Parameter("w", shape=(2,))
    param.initialize(init.One(), ctx=[cpu(0), cpu(1)])
    assert param.list_ctx() == [cpu(0), cpu(1)]
    param.data(cpu(1))[:] = 3
    assert param.data(cpu(0)).asnumpy().tolist() == [1.0, 1.0]


def test_reset_ctx_averages_the_copies_and_zeroes_gradients():
    param = gluon.Parameter("w", shape=(2,))
    param.initialize(init.One(), ctx=[cpu(0), cpu(1)])
    param.data(cpu(1))[:] = 3
    param.reset_ctx(cpu(0))
    assert param.list_ctx() == [cpu(0)]
    assert param.data().asnumpy().tolist() == [2.0, 2.0]
    assert param.grad().asnumpy().tolist() == [0.0, 0.0]


def test_reset_ctx_of_an_uninitialized_parameter():
    with pytest.raises(ValueError, match=(
        "^Cannot reset context for Parameter 'n' because it has not been initialized.$"
    )):
        gluon.Parameter("n", shape=(2,)).reset_ctx(cpu(1))


def test_cast_converts_data_and_gradient():
    param = initialized(shape=(2,))
    param.cast("float16")
    assert (param.dtype, param.data().dtype, param.grad().dtype) == (
        "float16", np.float16, np.float16)
    param.dtype = np.float64
    assert param.data().dtype == np.float64


def test_lr_mult_and_wd_mult_are_settable():
    param = gluon.Parameter("w")
    param.lr_mult, param.wd_mult = 2.0, 0.0
    assert (param.lr_mult, param.wd_mult) == (2.0, 0.0)


# ---- Constant --------------------------------------------------------------------------------
def test_constant_is_never_differentiated():
    constant = gluon.Constant("k_c", [[1, 2], [3, 4]])
    assert constant.grad_req == "null"
    with pytest.warns(UserWarning, match=(
        '^Constant parameter "k_c" does not support grad_req other than "null", and new value '
        '"write" is ignored.$'
    )):
        constant.grad_req = "write"
    assert constant.grad_req == "null"


def test_constant_initialize_restores_its_value_after_set_data():
    constant = gluon.Constant("k_c", [[1, 2], [3, 4]])
    constant.initialize()
    assert str(constant.init).startswith("Constant_k_c_")
    constant.set_data(nd.array([[5, 6], [7, 8]]))
    constant.initialize(force_reinit=True)
    assert constant.data().asnumpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(RuntimeError, match="because grad_req='null'$"):
        constant.grad()


def test_constant_from_an_int64_array_is_float32():
    assert gluon.Constant("c3", np.array([1, 2])).dtype == np.float32


# ---- ParameterDict ---------------------------------------------------------------------------
def test_parameter_dict_behaves_like_a_mapping_without_len():
    params = gluon.ParameterDict("p_")
    params.get("w", shape=(1,))
    assert list(params) == list(params.keys()) == ["p_w"]
    assert "p_w" in params and "nope" not in params
    assert [type(v).__name__ for v in params.values()] == ["Parameter"]
    with pytest.raises(TypeError):
        len(params)
    with pytest.raises(KeyError):
        params["nonexistent"]


def test_get_returns_the_existing_parameter_and_merges_its_shape():
    params = gluon.ParameterDict("p_")
    first = params.get("w", shape=(2, 0))
    assert params.get("w", shape=(0, 5)) is first
    assert first.shape == (2, 5)


@pytest.mark.parametrize(("attribute", "wanted", "stored"), [
    ("shape", (3, 5), "(2, 5)"),
    ("lr_mult", 2.0, "1.0"),
    ("dtype", "float16", "float32"),
    ("grad_req", "add", "write"),
])
def test_get_with_a_different_attribute_is_refused(attribute, wanted, stored):
    params = gluon.ParameterDict("p_")
    params.get("w", shape=(2, 5), dtype="float32")
    with pytest.raises(AssertionError) as error:
        params.get("w", **{attribute: wanted})
    assert str(error.value) == (
        f"Cannot retrieve Parameter 'p_w' because desired attribute does not match with stored "
        f"for attribute '{attribute}': desired '{wanted}' vs stored '{stored}'."
    )


def test_get_accepts_an_equivalent_dtype_and_sets_a_missing_init():
    params = gluon.ParameterDict("p_")
    param = params.get("w", dtype="float32")
    params.get("w", dtype=np.float32, init=init.One())
    assert isinstance(param.init, init.One)


def test_get_finds_the_shared_dicts_parameter():
    source = gluon.ParameterDict("m_")
    weight = source.get("w", shape=(1,))
    child = gluon.ParameterDict("m_", shared=source)
    assert list(child.keys()) == []
    assert child.get("w") is weight
    child.get("v")
    assert (list(child.keys()), list(source.keys())) == (["m_w", "m_v"], ["m_w"])


def test_get_constant():
    params = gluon.ParameterDict("k_")
    constant = params.get_constant("c", [[1.0, 2.0], [3.0, 4.0]])
    assert params.get_constant("c") is constant
    assert params.get_constant("c", np.array([[1.0, 2.0], [3.0, 4.0]])) is constant
    with pytest.raises(KeyError, match=(
        "No constant named 'k_missing'. Please specify value if you want to create a new "
        "constant."
    )):
        params.get_constant("missing")
    with pytest.raises(AssertionError, match=(
        "^Constant 'k_c' already exists but it's value doesn't match new value$"
    )):
        params.get_constant("c", np.zeros((2, 2)))
    params.get("notconst")
    with pytest.raises(AssertionError, match=(
        "^Parameter 'k_notconst' already exists but it is not a constant.$"
    )):
        params.get_constant("notconst", np.zeros(1))


def test_update_copies_entries_and_refuses_a_different_object_under_one_name():
    a, b = gluon.ParameterDict("a_"), gluon.ParameterDict("b_")
    a.get("w")
    b.update(a)
    b.update(a)  # the same objects again: fine
    assert list(b.keys()) == ["a_w"] and b.prefix == "b_"
    other = gluon.ParameterDict("a_")
    other.get("w")
    with pytest.raises(AssertionError, match="same name 'a_w'$"):
        b.update(other)


def test_setattr_on_a_selection():
    net = nn.Dense(2, in_units=3)
    net.collect_params(".*bias").setattr("wd_mult", 0.0)
    net.collect_params().setattr("grad_req", "null")
    assert (net.weight.wd_mult, net.bias.wd_mult) == (1.0, 0.0)
    assert {p.grad_req for p in net.collect_params().values()} == {"null"}


def test_dict_initialize_follows_insertion_order_and_only_warns_for_initialized(capsys):
    first = nn.Dense(2, in_units=1)
    first.initialize()
    net = nn.Sequential()
    net.add(first, nn.Dense(2, in_units=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.initialize()
    assert [str(w.message).split("'")[1] for w in caught] == ["dense0_weight", "dense0_bias"]
    assert net[1].weight.data().shape == (2, 2)


def test_dict_zero_grad_skips_null_parameters():
    net = nn.Dense(2, in_units=2)
    net.initialize()
    net.bias.grad_req = "null"
    with autograd.record():
        y = net(nd.ones((1, 2))).sum()
    y.backward()
    net.collect_params().zero_grad()
    assert not net.weight.grad().asnumpy().any()


def test_dict_list_ctx_and_reset_ctx():
    net = nn.Dense(2, in_units=2)
    net.initialize()
    net.collect_params().reset_ctx(cpu(1))
    assert net.collect_params().list_ctx() == [cpu(1)]


def test_deferred_init_error_is_an_engine_error():
    from paramstore import EngineError

    assert issubclass(DeferredInitializationError, EngineError)
    assert issubclass(DeferredInitializationError, RuntimeError)
