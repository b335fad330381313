"""NDArray: printing, dtype rules and indexing as Gluon users see them (GLUON_SPEC 1.6)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paramstore import nd
from paramstore.base import EngineError


def test_repr_is_numpy_body_with_shape_and_context_footer():
    assert repr(nd.ones((2,))) == "\n[1. 1.]\n<NDArray 2 @cpu(0)>"
    assert str(nd.zeros((2, 3))) == "\n[[0. 0. 0.]\n [0. 0. 0.]]\n<NDArray 2x3 @cpu(0)>"


def test_large_arrays_print_summarised_like_numpy():
    a = nd.arange(2000).reshape((4, 500))
    text = repr(a)
    assert "..." in text
    assert text.endswith("<NDArray 4x500 @cpu(0)>")
    assert text.splitlines()[1].startswith("[[0.000e+00 1.000e+00 2.000e+00 ...")


def test_list_of_arrays_prints_each_with_leading_newline():
    text = str([nd.arange(4), nd.zeros(4)])
    assert text == "[\n[0. 1. 2. 3.]\n<NDArray 4 @cpu(0)>, \n[0. 0. 0. 0.]\n<NDArray 4 @cpu(0)>]"


def test_dtype_is_the_numpy_type_class():
    assert nd.zeros((2,)).dtype is np.float32
    assert repr(nd.zeros((2,)).dtype) == "<class 'numpy.float32'>"


def test_array_defaults_to_float32_even_for_int64_and_float64_input():
    assert nd.array(np.arange(3)).dtype is np.float32
    assert nd.array(np.ones(3, dtype=np.float64)).dtype is np.float32
    assert nd.array(np.arange(3), dtype="int64").dtype is np.int64


def test_full_integer_index_gives_one_element_array():
    w = nd.zeros((3, 4))
    w[0, 0] = 42
    assert repr(w[0, 0]) == "\n[42.]\n<NDArray 1 @cpu(0)>"


def test_row_index_and_slices_are_views_that_write_through():
    w = nd.zeros((3, 4))
    w[:] += 1
    w[0][1] = 7
    row = w[0]
    row[:] *= 2
    assert w.asnumpy().tolist()[0] == [2.0, 14.0, 2.0, 2.0]
    assert w.asnumpy().tolist()[1] == [1.0, 1.0, 1.0, 1.0]


def test_in_place_multiply_by_comparison_masks_values():
    data = nd.array([[-6.0, 1.0], [7.0, -2.0]])
    data *= data.abs() >= 5
    assert data.asnumpy().tolist() == [[-6.0, 0.0], [7.0, -0.0]]


def test_comparison_returns_zeros_and_ones_in_the_array_dtype():
    result = nd.array([1, 2, 3]) == nd.array([1, 0, 3])
    assert result.dtype is np.float32
    assert result.asnumpy().tolist() == [1.0, 0.0, 1.0]


def test_reductions_over_everything_give_shape_one():
    a = nd.array([[1, 2], [3, 4]])
    assert a.sum().shape == (1,)
    assert a.mean().asscalar() == np.float32(2.5)
    assert a.max(axis=0).asnumpy().tolist() == [3.0, 4.0]
    assert a.norm().asscalar() == pytest.approx(np.sqrt(30), rel=1e-6)


def test_asscalar_needs_one_element():
    with pytest.raises(ValueError):
        nd.zeros((2,)).asscalar()


def test_reshape_zero_keeps_a_dimension_and_minus_one_infers():
    a = nd.zeros((2, 3, 4))
    assert a.reshape((0, -1)).shape == (2, 12)
    assert a.reshape(4, 6).shape == (4, 6)
    assert a.T.shape == (4, 3, 2)


def test_numpy_operand_on_the_left_gives_an_ndarray():
    result = np.ones(2, dtype=np.float32) + nd.ones((2,))
    assert isinstance(result, nd.NDArray)
    assert result.asnumpy().tolist() == [2.0, 2.0]


def test_backward_on_unrecorded_result_raises():
    a = nd.ones((2,))
    with pytest.raises(EngineError, match="not in a computational graph"):
        a.sum().backward()


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=st.floats(-1e3, 1e3, width=32)))
def test_printing_body_is_numpy_str_for_any_array(values):
    text = repr(nd.array(values))
    body, footer = text[1:].rsplit("\n", 1)
    assert body == str(values)
    assert footer == f"<NDArray {'x'.join(map(str, values.shape))} @cpu(0)>"


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                  elements=st.floats(-10, 10, width=32)),
       hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                  elements=st.floats(-10, 10, width=32)))
def test_broadcasting_arithmetic_matches_numpy(a, b):
    try:
        expected = a * b + a
    except ValueError:
        with pytest.raises(EngineError, match="multiply: operands of shapes"):
            nd.array(a) * nd.array(b)
        return
    np.testing.assert_allclose((nd.array(a) * nd.array(b) + nd.array(a)).asnumpy(), expected)
