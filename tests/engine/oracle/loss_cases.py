"""Loss cases: `(name, f(loss_module, *arrays), inputs, differentiated input positions)`.

`f` receives a `gluon.loss` module (MXNet's or paramstore's) and returns the loss of the
inputs, so the same line runs on both engines.
"""

import numpy as np

_rng = np.random.default_rng(3)


def scores(*shape: int) -> np.ndarray:
    return _rng.uniform(-2.0, 2.0, shape).astype(np.float32)


def signs(*shape: int) -> np.ndarray:
    return _rng.choice([-1.0, 1.0], shape).astype(np.float32)


def positive(*shape: int) -> np.ndarray:
    return _rng.uniform(0.2, 3.0, shape).astype(np.float32)


def distribution(*shape: int) -> np.ndarray:
    values = _rng.uniform(0.1, 1.0, shape)
    return (values / values.sum(axis=-1, keepdims=True)).astype(np.float32)


P34, P3 = scores(3, 4), scores(3)
CTC_PRED = scores(2, 6, 5)
CTC_LABEL = np.array([[0, 1, 1, -1], [3, 2, -1, -1]], np.float32)

CASES = [
    ("HuberLoss", lambda L, p, y: L.HuberLoss()(p, y), [P34, scores(3, 4)], [0, 1]),
    ("HuberLoss rho weighted", lambda L, p, y, w: L.HuberLoss(rho=0.5, weight=2.0)(p, y, w),
     [P34, scores(3, 4), positive(3, 1)], [0]),
    ("HingeLoss", lambda L, p, y: L.HingeLoss()(p, y), [P34, signs(3, 4)], [0]),
    ("HingeLoss margin", lambda L, p, y: L.HingeLoss(margin=2.5)(p, y), [P3, signs(3)], [0]),
    ("SquaredHingeLoss", lambda L, p, y: L.SquaredHingeLoss()(p, y), [P34, signs(3, 4)], [0]),
    ("SquaredHingeLoss batch_axis", lambda L, p, y: L.SquaredHingeLoss(batch_axis=1)(p, y),
     [P34, signs(3, 4)], [0]),
    ("LogisticLoss", lambda L, p, y: L.LogisticLoss()(p, y), [P34, signs(3, 4)], [0]),
    ("LogisticLoss binary", lambda L, p, y: L.LogisticLoss(label_format="binary")(p, y),
     [scores(4, 2) * 20, _rng.integers(0, 2, (4, 2)).astype(np.float32)], [0]),
    ("KLDivLoss", lambda L, p, y: L.KLDivLoss()(p, y),
     [np.log(distribution(3, 4)), distribution(3, 4)], [0]),
    ("KLDivLoss from scores", lambda L, p, y: L.KLDivLoss(from_logits=False, axis=1)(p, y),
     [P34, distribution(3, 4)], [0]),
    ("TripletLoss", lambda L, a, p, n: L.TripletLoss()(a, p, n),
     [P34, scores(3, 4), scores(3, 4)], [0, 1, 2]),
    ("TripletLoss margin weight", lambda L, a, p, n: L.TripletLoss(margin=8, weight=0.5)(a, p, n),
     [scores(2, 3, 2), scores(2, 3, 2), scores(2, 3, 2)], [0, 1, 2]),
    ("PoissonNLLLoss", lambda L, p, y: L.PoissonNLLLoss()(p, y),
     [P34, _rng.integers(0, 5, (3, 4)).astype(np.float32)], [0]),
    ("PoissonNLLLoss rates", lambda L, p, y: L.PoissonNLLLoss(from_logits=False)(p, y),
     [positive(3, 4), _rng.integers(0, 5, (3, 4)).astype(np.float32)], [0]),
    # Gluon's compute_full writes in place, which its autograd refuses: values only.
    ("PoissonNLLLoss full", lambda L, p, y: L.PoissonNLLLoss(compute_full=True)(p, y),
     [P34, _rng.integers(1, 6, (3, 4)).astype(np.float32)], []),
    ("CosineEmbeddingLoss", lambda L, a, b, y: L.CosineEmbeddingLoss()(a, b, y),
     [P34, scores(3, 4), np.array([1, -1, 1], np.float32)], [0, 1]),
    ("CosineEmbeddingLoss margin", lambda L, a, b, y: L.CosineEmbeddingLoss(margin=0.3)(a, b, y),
     [scores(4, 3), scores(4, 3), np.array([-1, -1, 1, -1], np.float32)], [0, 1]),
    ("CTCLoss", lambda L, p, y: L.CTCLoss()(p, y), [CTC_PRED, CTC_LABEL], [0]),
    ("CTCLoss lengths", lambda L, p, y, pl, yl: L.CTCLoss()(p, y, pl, yl),
     [CTC_PRED, CTC_LABEL, np.array([5, 4], np.float32), np.array([2, 1], np.float32)], [0]),
    ("CTCLoss TNC", lambda L, p, y: L.CTCLoss(layout="TNC", label_layout="TN")(p, y),
     [CTC_PRED.transpose(1, 0, 2).copy(), CTC_LABEL.T.copy()], [0]),
]
