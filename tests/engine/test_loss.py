"""Losses: Gluon's values, shapes, reprs and gradients (spec 6.3, raw outputs e07)."""

import numpy as np
import pytest
from gradcheck import check_gradient

from paramstore import autograd, nd
from paramstore.gluon import loss as gloss

# The inputs of the spec's experiment e07, whose outputs the tests reproduce.
pred = nd.array([[1.0, 2.0], [3.0, 4.0]])
label = nd.array([[1.5, 2.0], [0.0, 4.0]])
logits = nd.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
labels = nd.array([2, 0])
GLUON_CE = [0.40760383009910583, 1.0986100435256958]


def values(array: nd.NDArray) -> list:
    return array.asnumpy().tolist()


# ---- L2Loss and L1Loss -----------------------------------------------------------------------
def test_l2_loss_is_half_the_mean_squared_error_per_sample():
    assert values(gloss.L2Loss()(pred, label)) == [0.0625, 2.25]


def test_l2_loss_weight_scales_the_loss():
    assert values(gloss.L2Loss(weight=2)(pred, label)) == [0.125, 4.5]


def test_l2_loss_reshapes_the_label_to_the_prediction():
    assert values(gloss.L2Loss()(pred, nd.array([1.5, 2.0, 0.0, 4.0]))) == [0.0625, 2.25]


def test_l2_loss_of_a_vector_keeps_one_value_per_sample():
    assert values(gloss.L2Loss()(nd.array([1.0, 2.0, 3.0]), nd.zeros(3))) == [0.5, 2.0, 4.5]


def test_l2_loss_averages_every_axis_but_the_batch_axis():
    assert values(gloss.L2Loss()(nd.ones((2, 1, 2)), nd.zeros((2, 1, 2)))) == [0.5, 0.5]


def test_l2_loss_with_another_batch_axis_keeps_that_axis():
    p = nd.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    l = nd.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert values(gloss.L2Loss(batch_axis=1)(p, l)) == [0.0625, 1.0, 2.0]


def test_sample_weight_broadcasts_over_each_sample():
    assert values(gloss.L2Loss()(pred, label, nd.array([[1.0], [0.0]]))) == [0.0625, 0.0]


def test_l1_loss_is_the_mean_absolute_error_per_sample():
    assert values(gloss.L1Loss()(pred, label)) == [0.25, 1.5]


def test_l1_loss_weight_scales_the_loss():
    p = nd.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    l = nd.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert values(gloss.L1Loss(weight=3)(p, l)) == [4.0, 2.5]


# ---- SoftmaxCrossEntropyLoss -----------------------------------------------------------------
def test_softmax_cross_entropy_is_minus_log_softmax_at_the_label():
    got = values(gloss.SoftmaxCrossEntropyLoss()(logits, labels))
    assert got == pytest.approx(GLUON_CE, rel=1e-5)


def test_softmax_cross_entropy_accepts_labels_of_shape_n_by_1():
    got = values(gloss.SoftmaxCrossEntropyLoss()(logits, nd.array([[2], [0]])))
    assert got == pytest.approx(GLUON_CE, rel=1e-5)


def test_softmax_cross_entropy_truncates_float_labels():
    got = values(gloss.SoftmaxCrossEntropyLoss()(logits, nd.array([1.7, 0.2])))
    assert got == pytest.approx([1.4076038599014282, 1.0986100435256958], rel=1e-5)


def test_softmax_cross_entropy_clips_out_of_range_labels():
    got = values(gloss.SoftmaxCrossEntropyLoss()(logits, nd.array([5, -1])))
    assert got == pytest.approx(GLUON_CE, rel=1e-5)


def test_softmax_cross_entropy_with_dense_labels():
    dense = nd.array([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    got = values(gloss.SoftmaxCrossEntropyLoss(sparse_label=False)(logits, dense))
    assert got == pytest.approx(GLUON_CE, rel=1e-5)


def test_softmax_cross_entropy_from_logits_takes_log_probabilities():
    loss = gloss.SoftmaxCrossEntropyLoss(from_logits=True)
    got = loss(nd.array([[-1.0, -2.0, -3.0]]), nd.array([1]))
    assert values(got) == [2.0]


def test_softmax_cross_entropy_weight_scales_the_loss():
    got = values(gloss.SoftmaxCrossEntropyLoss(weight=2)(logits, labels))
    assert got == pytest.approx([0.8152076601982117, 2.1972200870513916], rel=1e-5)


def test_softmax_cross_entropy_along_another_axis_gives_one_value_per_sample():
    assert gloss.SoftmaxCrossEntropyLoss(axis=1)(nd.ones((2, 3, 4)), nd.zeros((2, 4))).shape == (2,)


def test_softmax_cross_entropy_output_has_the_batch_shape():
    assert gloss.SoftmaxCrossEntropyLoss()(nd.ones((5, 3)), nd.zeros(5)).shape == (5,)


def test_softmax_ce_loss_is_an_alias():
    assert gloss.SoftmaxCELoss is gloss.SoftmaxCrossEntropyLoss


def test_softmax_cross_entropy_gradient_is_softmax_minus_one_hot():
    x = logits.copy()
    x.attach_grad()
    with autograd.record():
        l = gloss.SoftmaxCrossEntropyLoss()(x, labels)
    l.backward()
    expected = [[0.09003, 0.24473, -0.33476], [-0.66667, 0.33333, 0.33333]]
    np.testing.assert_allclose(values(x.grad), expected, atol=1e-5)


# ---- SigmoidBinaryCrossEntropyLoss -----------------------------------------------------------
bce_pred = nd.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
bce_label = nd.array([[1, 0, 1], [0, 0, 1]])


def test_sigmoid_bce_from_logits():
    got = values(gloss.SigmoidBinaryCrossEntropyLoss()(bce_pred, bce_label))
    assert got == pytest.approx([0.16292572, 0.9934953], rel=1e-6)


def test_sigmoid_bce_from_sigmoid_matches_from_logits():
    got = values(gloss.SigmoidBCELoss(from_sigmoid=True)(nd.sigmoid(bce_pred), bce_label))
    assert got == pytest.approx([0.16292568, 0.9934953], rel=1e-6)


def test_sigmoid_bce_is_stable_for_large_logits():
    got = gloss.SigmoidBCELoss()(nd.array([[100.0, -100.0, 0.0]]), nd.array([[0, 1, 1]]))
    assert values(got) == pytest.approx([66.89771], rel=1e-6)


def test_sigmoid_bce_from_sigmoid_stays_finite_at_probability_one():
    got = gloss.SigmoidBCELoss(from_sigmoid=True)(nd.sigmoid(nd.array([[1.0, 2.0, 30.0]])),
                                                  nd.array([[1, 0, 1]]))
    assert values(got) == pytest.approx([0.81339645], rel=1e-6)


def test_sigmoid_bce_with_sample_weight():
    got = values(gloss.SigmoidBCELoss()(bce_pred, bce_label, nd.array([[1.0], [0.5]])))
    assert got == pytest.approx([0.16292572, 0.49674764], rel=1e-6)


def test_sigmoid_bce_pos_weight_weighs_positive_examples():
    plain = gloss.SigmoidBCELoss()
    pos = nd.array([[1.0, -2.0]])
    doubled = plain(pos, nd.array([[1, 1]]), None, nd.array([2.0, 2.0]))
    assert values(doubled) == pytest.approx([2 * v for v in values(plain(pos, nd.array([[1, 1]])))])


def test_sigmoid_binary_cross_entropy_aliases():
    assert gloss.SigmoidBCELoss is gloss.SigmoidBinaryCrossEntropyLoss


# ---- reprs and gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("loss, text", [
    (gloss.L2Loss(), "L2Loss(batch_axis=0, w=1.0)"),
    (gloss.L2Loss(weight=2), "L2Loss(batch_axis=0, w=2)"),
    (gloss.L1Loss(), "L1Loss(batch_axis=0, w=None)"),
    (gloss.SoftmaxCELoss(weight=2.0, batch_axis=1), "SoftmaxCrossEntropyLoss(batch_axis=1, w=2.0)"),
    (gloss.SigmoidBCELoss(), "SigmoidBinaryCrossEntropyLoss(batch_axis=0, w=None)"),
])
def test_repr_shows_batch_axis_and_weight(loss, text):
    assert repr(loss) == text


def test_a_weight_that_is_not_a_number_is_refused():
    with pytest.raises(AssertionError, match="weight must be a number"):
        gloss.L1Loss(weight="2")


@pytest.mark.parametrize("loss, label", [
    (gloss.L2Loss(), np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.5]])),
    (gloss.L1Loss(weight=2.0), np.array([[0.1, -1.0, 2.0], [1.0, 0.2, 0.5]])),
    (gloss.SoftmaxCrossEntropyLoss(), np.array([2.0, 0.0])),
    (gloss.SoftmaxCrossEntropyLoss(sparse_label=False), np.array([[0.2, 0.3, 0.5], [1, 0, 0]])),
    (gloss.SigmoidBCELoss(), np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])),
    (gloss.SigmoidBCELoss(from_sigmoid=True), np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])),
], ids=["l2", "l1", "softmax-ce", "softmax-ce-dense", "sigmoid-bce", "sigmoid-bce-probabilities"])
def test_loss_gradient_matches_finite_differences(loss, label):
    prediction = np.array([[0.3, 0.6, 0.2], [0.9, 0.4, 0.7]])
    check_gradient(lambda p, l: loss(p, l), prediction, label, wrt=[0])
