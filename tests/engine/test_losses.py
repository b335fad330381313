"""Gluon's other losses against MXNet 1.9.1: values, shapes and gradients from recorded runs,
gradients also against finite differences."""

import json
import pathlib

import numpy as np
import pytest
from gradcheck import check_gradient
from oracle.heads import head_for
from oracle.loss_cases import CASES

from paramstore import autograd, nd
from paramstore.gluon import loss as gloss

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "losses.json").read_text())


def arrays_of(inputs, dtype=None):
    return [nd.array(x, dtype=dtype or x.dtype) for x in inputs]


@pytest.mark.parametrize("name, f, inputs, wrt", CASES, ids=[case[0] for case in CASES])
def test_loss_values_and_shapes_are_gluons(name, f, inputs, wrt):
    (expected,) = RECORDED[name]["outputs"]
    out = f(gloss, *arrays_of(inputs))
    assert list(out.shape) == expected["shape"]
    np.testing.assert_allclose(out.asnumpy().reshape(-1), expected["values"], rtol=2e-5,
                               atol=1e-6)


DIFFERENTIABLE = [case for case in CASES if case[3]]


@pytest.mark.parametrize("name, f, inputs, wrt", DIFFERENTIABLE,
                         ids=[case[0] for case in DIFFERENTIABLE])
def test_loss_gradients_are_gluons(name, f, inputs, wrt):
    arrays = arrays_of(inputs)
    for i in wrt:
        arrays[i].attach_grad()
    with autograd.record():
        out = f(gloss, *arrays)
    out.backward(nd.array(head_for(out.shape)))
    for i in wrt:
        np.testing.assert_allclose(arrays[i].grad.asnumpy().reshape(-1),
                                   RECORDED[name]["grads"][str(i)], rtol=2e-5, atol=1e-6,
                                   err_msg=f"gradient of input {i}")


@pytest.mark.parametrize("name, f, inputs, wrt", CASES, ids=[case[0] for case in CASES])
def test_loss_gradient_matches_finite_differences(name, f, inputs, wrt):
    positions = wrt or [0]
    check_gradient(lambda *arrays: f(gloss, *arrays), *inputs, wrt=positions)


def test_reprs_name_the_loss_as_gluon_does():
    assert repr(gloss.HuberLoss()) == "HuberLoss(batch_axis=0, w=None)"
    assert repr(gloss.CTCLoss()) == "CTCLoss(batch_axis=0, w=None)"
    assert repr(gloss.CTCLoss(label_layout="TN")) == "CTCLoss(batch_axis=1, w=None)"


def test_logistic_loss_refuses_an_unknown_label_format():
    with pytest.raises(ValueError, match="label_format can only be signed or binary"):
        gloss.LogisticLoss(label_format="onehot")


def test_ctc_loss_refuses_a_label_naming_the_blank():
    with pytest.raises(Exception, match="names the blank"):
        gloss.CTCLoss()(nd.zeros((1, 4, 3)), nd.array([[2, 0]]))


def test_ctc_loss_of_a_certain_alignment_is_zero():
    # Scores that make "a, blank, b" certain: the label (a, b) has probability one.
    scores = np.full((1, 3, 3), -30.0, np.float32)
    scores[0, [0, 1, 2], [0, 2, 1]] = 30.0
    loss = gloss.CTCLoss()(nd.array(scores), nd.array([[0, 1]]))
    assert loss.asnumpy()[0] == pytest.approx(0.0, abs=1e-6)
