"""Finite-difference gradient checks: one line per operator.

`check_gradient(lambda a, b: nd.dot(a, b), x, y)` records `f` on float64 copies of the inputs,
runs backward with a random head gradient (so every output element counts, with its own weight),
and compares each input's gradient with central differences of `sum(head * f(...))`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from paramstore import autograd, nd


def check_gradient(
    f: Callable[..., nd.NDArray],
    *inputs: np.ndarray,
    wrt: Sequence[int] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
) -> None:
    """Assert that the tape's gradient of `f` matches central differences in float64.

    `wrt` lists the positions of the inputs to differentiate (default: all). Inputs that are
    not differentiated (indices, labels) are passed as they are.
    """
    positions = range(len(inputs)) if wrt is None else wrt
    arrays = [
        nd.array(x, dtype=np.float64) if i in positions else nd.array(x, dtype=np.asarray(x).dtype)
        for i, x in enumerate(inputs)
    ]
    for i in positions:
        arrays[i].attach_grad()
    with autograd.record():
        out = f(*arrays)
    head = np.random.default_rng(seed).uniform(0.5, 1.5, out.shape)
    out.backward(nd.array(head, dtype=np.float64))

    def weighted_output() -> float:
        return float(np.sum(head * f(*arrays).asnumpy()))

    for i in positions:
        data = arrays[i]._data
        numeric = np.zeros_like(data)
        for index in np.ndindex(data.shape):
            original = data[index]
            data[index] = original + eps
            plus = weighted_output()
            data[index] = original - eps
            minus = weighted_output()
            data[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(
            arrays[i].grad.asnumpy(), numeric, rtol=rtol, atol=atol,
            err_msg=f"gradient of input {i}",
        )
