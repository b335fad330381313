"""Array operators against MXNet 1.9.1: values, dtypes, shapes, gradients and refusals.

The expected values come from `oracle/record.py`, which runs the very cases of
`oracle/array_cases.py` on MXNet; every differentiable case is also checked against finite
differences.
"""

import json
import pathlib

import numpy as np
import pytest
from gradcheck import check_gradient
from oracle.array_cases import CASES, ERROR_CASES
from oracle.heads import head_for

from paramstore import autograd, nd
from paramstore.base import EngineError

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "arrays.json").read_text())


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize("name, f, inputs, wrt", CASES, ids=[case[0] for case in CASES])
def test_values_dtypes_and_shapes_are_gluons(name, f, inputs, wrt):
    outs = as_list(f(nd, *[nd.array(x, dtype=x.dtype) for x in inputs]))
    expected = RECORDED[name]["outputs"]
    assert [list(out.shape) for out in outs] == [e["shape"] for e in expected]
    assert [np.dtype(out.dtype).name for out in outs] == [e["dtype"] for e in expected]
    for out, e in zip(outs, expected):
        np.testing.assert_allclose(out.asnumpy().reshape(-1), e["values"], rtol=1e-6)


DIFFERENTIABLE = [case for case in CASES if case[3]]


@pytest.mark.parametrize("name, f, inputs, wrt", DIFFERENTIABLE,
                         ids=[case[0] for case in DIFFERENTIABLE])
def test_gradients_are_gluons(name, f, inputs, wrt):
    arrays = [nd.array(x, dtype=x.dtype) for x in inputs]
    for i in wrt:
        arrays[i].attach_grad()
    with autograd.record():
        outs = [out for out in as_list(f(nd, *arrays)) if out.dtype == np.float32]
    autograd.backward(outs, [nd.array(head_for(out.shape)) for out in outs])
    for i in wrt:
        np.testing.assert_allclose(
            arrays[i].grad.asnumpy().reshape(-1), RECORDED[name]["grads"][str(i)], rtol=1e-6,
            atol=1e-6, err_msg=f"gradient of input {i}",  # Gluon sums some in float32
        )


def flat_outputs(f):
    """`f`'s floating outputs as one vector, so several outputs are checked at once."""
    def flat(*arrays):
        outs = [out for out in as_list(f(nd, *arrays)) if out.dtype == np.float64]
        return nd.concat(*[out.reshape((-1,)) for out in outs], dim=0)

    return flat


@pytest.mark.parametrize("name, f, inputs, wrt", DIFFERENTIABLE,
                         ids=[case[0] for case in DIFFERENTIABLE])
def test_gradient_matches_finite_differences(name, f, inputs, wrt):
    check_gradient(flat_outputs(f), *inputs, wrt=wrt)


@pytest.mark.parametrize("name, f, inputs", ERROR_CASES, ids=[case[0] for case in ERROR_CASES])
def test_what_gluon_refuses_raises_the_engine_error(name, f, inputs):
    assert RECORDED["errors"][name]
    with pytest.raises(EngineError):
        f(nd, *[nd.array(x, dtype=x.dtype) for x in inputs])


# ---- method forms ----------------------------------------------------------------------------
def test_arrays_have_the_method_forms_gluon_gives_them():
    x = nd.arange(6).reshape((2, 3))
    assert x.slice_axis(axis=1, begin=0, end=2).asnumpy().tolist() == [[0, 1], [3, 4]]
    assert x.slice(begin=(1, 1), end=(2, 3)).asnumpy().tolist() == [[4, 5]]
    assert x.take(nd.array([1])).asnumpy().tolist() == [[3, 4, 5]]
    assert (x.tile((1, 2)).shape, x.repeat(2, axis=0).shape) == ((2, 6), (4, 3))
    assert x.reshape((1, 2, 3)).squeeze().shape == (2, 3)
    assert x.topk(k=1).asnumpy().tolist() == [[2], [2]]
    assert x.sort(is_ascend=False).asnumpy().tolist() == [[2, 1, 0], [5, 4, 3]]
    assert x.argsort(axis=0).asnumpy().tolist() == [[0, 0, 0], [1, 1, 1]]
    assert [part.shape for part in x.split(num_outputs=3)] == [(2, 1)] * 3
    assert x[0:1].broadcast_to((2, 3)).asnumpy().tolist() == [[0, 1, 2], [0, 1, 2]]
    assert x[0:1].broadcast_like(x).shape == (2, 3)
    np.testing.assert_allclose(x.norm(axis=1).asnumpy(), [5 ** 0.5, 50 ** 0.5], rtol=1e-6)


def test_take_raise_mode_refuses_an_index_out_of_range():
    with pytest.raises(EngineError, match="take: an index is out of range"):
        nd.take(nd.ones((2, 3)), nd.array([0, 2]), mode="raise")


def test_a_differentiable_slice_sends_gradients_only_to_the_slice():
    x = nd.ones((2, 4))
    x.attach_grad()
    with autograd.record():
        y = nd.slice_axis(x, axis=1, begin=1, end=3) * 2
    y.backward()
    assert x.grad.asnumpy().tolist() == [[0, 2, 2, 0], [0, 2, 2, 0]]
