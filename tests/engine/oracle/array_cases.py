"""Array-op cases: `(name, f(nd, *arrays), inputs, differentiated input positions)`.

`f` receives an `nd` module (MXNet's or paramstore's) and the inputs as its arrays, so the same
line runs on both engines. Inputs are float32; index inputs are floats, as in Gluon.
"""

import numpy as np

_rng = np.random.default_rng(14)


def values(*shape: int) -> np.ndarray:
    """Distinct values in ±[0.5, 1.5] (no ties, so sorting and maxima have one answer)."""
    count = int(np.prod(shape))
    spread = (np.arange(count) + _rng.uniform(0.1, 0.9, count)) / count
    magnitudes = 0.5 + spread[_rng.permutation(count)]
    return (magnitudes * _rng.choice([-1.0, 1.0], count)).reshape(shape).astype(np.float32)


def indices(*entries: float) -> np.ndarray:
    return np.array(entries, dtype=np.float32)


X34, X234, X3, X14 = values(3, 4), values(2, 3, 4), values(3), values(1, 4)

CASES = [
    ("slice", lambda nd, x: nd.slice(x, begin=(0, 1), end=(2, 3)), [X34], [0]),
    ("slice none", lambda nd, x: nd.slice(x, begin=(None, 1), end=(None, None)), [X234], [0]),
    ("slice step", lambda nd, x: nd.slice(x, begin=(0, 3), end=(3, 0), step=(2, -1)), [X34], [0]),
    ("slice negative", lambda nd, x: nd.slice(x, begin=(-2,), end=(-1,)), [X34], [0]),
    ("slice_axis", lambda nd, x: nd.slice_axis(x, axis=1, begin=1, end=3), [X34], [0]),
    ("slice_axis end none", lambda nd, x: nd.slice_axis(x, axis=-1, begin=-3, end=None),
     [X234], [0]),
    ("slice_like", lambda nd, x, y: nd.slice_like(x, y), [X234, values(1, 2, 3)], [0]),
    ("slice_like axes", lambda nd, x, y: nd.slice_like(x, y, axes=(1,)), [X234, values(3, 2)],
     [0]),
    ("squeeze", lambda nd, x: nd.squeeze(x), [values(1, 3, 1)], [0]),
    ("squeeze axis", lambda nd, x: nd.squeeze(x, axis=2), [values(1, 3, 1)], [0]),
    ("squeeze to one element", lambda nd, x: nd.squeeze(x), [values(1, 1)], [0]),
    ("take", lambda nd, x, i: nd.take(x, i), [X34, indices(2, 0, 2)], [0]),
    ("take axis 1 matrix of indices", lambda nd, x, i: nd.take(x, i, axis=1),
     [X234, np.array([[3, 0], [1, 1]], np.float32)], [0]),
    ("take clip", lambda nd, x, i: nd.take(x, i, axis=1), [X34, indices(-3, 7, 1.7)], [0]),
    ("take wrap", lambda nd, x, i: nd.take(x, i, axis=1, mode="wrap"), [X34, indices(-1, 5)],
     [0]),
    ("pick", lambda nd, x, i: nd.pick(x, i), [X34, indices(0, 3, 1)], [0]),
    ("pick axis 0 keepdims", lambda nd, x, i: nd.pick(x, i, axis=0, keepdims=True),
     [X34, indices(2, 0, 1, 1)], [0]),
    ("pick wrap", lambda nd, x, i: nd.pick(x, i, mode="wrap"), [X34, indices(-1, 5, 2)], [0]),
    ("one_hot", lambda nd, i: nd.one_hot(i, 4), [indices(0, 3, 1, 7, -1)], []),
    ("one_hot values", lambda nd, i: nd.one_hot(i, 3, on_value=5, off_value=-1),
     [np.array([[0, 2], [1, 1]], np.float32)], []),
    ("where", lambda nd, c, x, y: nd.where(c, x, y),
     [np.array([[1, 0, 0, 2], [0, 1, 0, 0], [1, 1, 0, 0]], np.float32), X34, values(3, 4)],
     [1, 2]),
    ("where condition per row", lambda nd, c, x, y: nd.where(c, x, y),
     [indices(1, 0, 1), X34, values(3, 4)], [1, 2]),
    ("clip", lambda nd, x: nd.clip(x, -0.8, 1.0), [X34], [0]),
    ("concat", lambda nd, a, b: nd.concat(a, b, dim=0), [X34, X14], [0, 1]),
    ("concat default dim", lambda nd, a, b: nd.concat(a, b), [X34, values(3, 2)], [0, 1]),
    ("stack", lambda nd, a, b: nd.stack(a, b, axis=2), [X34, values(3, 4)], [0, 1]),
    ("split", lambda nd, x: nd.split(x, num_outputs=2), [X34], [0]),
    ("split axis 0 squeeze", lambda nd, x: nd.split(x, num_outputs=3, axis=0, squeeze_axis=True),
     [X34], [0]),
    ("split one output", lambda nd, x: nd.split(x, num_outputs=1, axis=0), [X34], [0]),
    ("tile", lambda nd, x: nd.tile(x, reps=(2, 3)), [X34], [0]),
    ("tile fewer reps", lambda nd, x: nd.tile(x, reps=(2,)), [X234], [0]),
    ("tile more reps", lambda nd, x: nd.tile(x, reps=(2, 1, 2)), [X34], [0]),
    ("repeat", lambda nd, x: nd.repeat(x, repeats=2), [X34], [0]),
    ("repeat axis", lambda nd, x: nd.repeat(x, repeats=3, axis=1), [X234], [0]),
    ("topk", lambda nd, x: nd.topk(x, k=2), [X34], []),
    ("topk value axis 0", lambda nd, x: nd.topk(x, axis=0, k=2, ret_typ="value"), [X34], [0]),
    ("topk both ascending", lambda nd, x: nd.topk(x, k=3, ret_typ="both", is_ascend=True),
     [X234], [0]),
    ("topk mask", lambda nd, x: nd.topk(x, k=2, ret_typ="mask"), [X34], []),
    ("topk flattened", lambda nd, x: nd.topk(x, axis=None, k=3, ret_typ="value"), [X34], [0]),
    ("topk int32 indices", lambda nd, x: nd.topk(x, k=2, dtype="int32"), [X34], []),
    ("sort", lambda nd, x: nd.sort(x, axis=-1), [X34], [0]),
    ("sort descending axis 0", lambda nd, x: nd.sort(x, axis=0, is_ascend=False), [X234], [0]),
    ("argsort", lambda nd, x: nd.argsort(x), [X34], []),
    ("argsort descending", lambda nd, x: nd.argsort(x, axis=1, is_ascend=False), [X234], []),
    ("norm", lambda nd, x: nd.norm(x), [X34], [0]),
    ("norm axis", lambda nd, x: nd.norm(x, axis=1), [X234], [0]),
    ("norm ord 1 keepdims", lambda nd, x: nd.norm(x, ord=1, axis=0, keepdims=True), [X34], [0]),
    ("broadcast_to", lambda nd, x: nd.broadcast_to(x, shape=(2, 3, 4)), [values(2, 1, 4)], [0]),
    ("broadcast_to zero keeps", lambda nd, x: nd.broadcast_to(x, shape=(3, 0)), [values(1, 4)],
     [0]),
    ("broadcast_like", lambda nd, x, y: nd.broadcast_like(x, y), [X14, X34], [0]),
    ("broadcast_like axes", lambda nd, x, y: nd.broadcast_like(x, y, lhs_axes=(0,),
                                                               rhs_axes=(1,)),
     [X14, X234], [0]),
    ("broadcast_axis", lambda nd, x: nd.broadcast_axis(x, axis=(0, 2), size=(2, 3)),
     [values(1, 4, 1)], [0]),
    ("broadcast_maximum", lambda nd, a, b: nd.broadcast_maximum(a, b), [X34, X14], [0, 1]),
    ("broadcast_minimum", lambda nd, a, b: nd.broadcast_minimum(a, b), [X34, X14], [0, 1]),
    ("broadcast_power", lambda nd, a, b: nd.broadcast_power(a, b),
     [np.abs(X34), X14], [0, 1]),
    ("broadcast_greater", lambda nd, a, b: nd.broadcast_greater(a, b), [X34, X14], []),
    ("broadcast_lesser_equal", lambda nd, a, b: nd.broadcast_lesser_equal(a, b), [X34, X14], []),
    ("broadcast_equal", lambda nd, a, b: nd.broadcast_equal(a, b),
     [X34, X34[1:2]], []),
    ("broadcast_not_equal", lambda nd, a, b: nd.broadcast_not_equal(a, b), [X34, X34[:1]], []),
    ("broadcast_greater_equal", lambda nd, a, b: nd.broadcast_greater_equal(a, b), [X34, X14],
     []),
    ("broadcast_lesser", lambda nd, a, b: nd.broadcast_lesser(a, b), [X34, X14], []),
    ("ctc_loss", lambda nd, x, y: nd.ctc_loss(x, y), [values(4, 2, 3), indices(1, 2, 2, 0)
                                                         .reshape(2, 2)], [0]),
    ("ctc_loss blank last with lengths",
     lambda nd, x, y, xl, yl: nd.ctc_loss(x, y, xl, yl, use_data_lengths=True,
                                          use_label_lengths=True, blank_label="last"),
     [values(5, 2, 4), indices(0, 2, 1, 1).reshape(2, 2), indices(5, 3), indices(2, 1)], [0]),
]

# Calls MXNet refuses (its MXNetError): paramstore must raise its EngineError, never NumPy's.
ERROR_CASES = [
    ("slice_like axis past shape_like", lambda nd, x, y: nd.slice_like(x, y, axes=(2,)),
     [X234, values(3, 2)]),
    ("split uneven", lambda nd, x: nd.split(x, num_outputs=3, axis=1), [X34]),
    ("squeeze axis of length 3", lambda nd, x: nd.squeeze(x, axis=1), [values(1, 3, 1)]),
    ("broadcast_to incompatible", lambda nd, x: nd.broadcast_to(x, shape=(3, 5)), [X34]),
    ("broadcast_like incompatible", lambda nd, x, y: nd.broadcast_like(x, y), [X34, X14]),
    ("broadcast_to another rank", lambda nd, x: nd.broadcast_to(x, shape=(2, 3, 4)), [X14]),
    ("broadcast_like another rank", lambda nd, x, y: nd.broadcast_like(x, y), [X14, X234]),
    ("take axis out of range", lambda nd, x, i: nd.take(x, i, axis=2), [X34, indices(0)]),
    ("topk k too large", lambda nd, x: nd.topk(x, k=5), [X34]),
    ("broadcast_greater incompatible", lambda nd, a, b: nd.broadcast_greater(a, b),
     [X34, values(2, 4)]),
    ("broadcast_maximum incompatible", lambda nd, a, b: nd.broadcast_maximum(a, b),
     [X34, values(2, 4)]),
    ("add incompatible", lambda nd, a, b: nd.add(a, b), [X34, values(2, 4)]),
    ("concat mismatched", lambda nd, a, b: nd.concat(a, b, dim=0), [X34, values(1, 3)]),
    ("dot mismatched", lambda nd, a, b: nd.dot(a, b), [X34, values(3, 4)]),
    ("reshape to a wrong size", lambda nd, x: x.reshape((5, 3)), [X34]),
    ("FullyConnected mismatched", lambda nd, x, w, b: nd.FullyConnected(x, w, b, num_hidden=2),
     [X34, values(2, 5), values(2)]),
    ("where mismatched", lambda nd, c, x: nd.where(c, x, x), [values(2, 2), X34]),
    ("where broadcast condition", lambda nd, c, x: nd.where(c, x, x), [values(1, 4), X34]),
    ("stack mismatched", lambda nd, a, b: nd.stack(a, b), [X34, values(3, 3)]),
]
