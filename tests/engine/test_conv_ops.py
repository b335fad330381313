"""nd.Convolution, nd.Deconvolution and nd.Pooling against their definitions, on random
shapes, strides, paddings, dilations and groups (the MXNet cases are in test_oracle_layers.py)."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore import nd

rng = np.random.default_rng(3)


def direct_convolution(x, w, stride, pad, dilate, groups):
    """The definition, one output element at a time: a sum over its window and channels."""
    n, c = x.shape[:2]
    o, per_group = w.shape[:2]
    kernel = w.shape[2:]
    padded = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out_size = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(x.shape[2:], pad, dilate, kernel, stride)
    ]
    out = np.zeros([n, o] + out_size)
    for position in itertools.product(*map(range, out_size)):
        for filt in range(o):
            group = filt // (o // groups)
            channels = slice(group * per_group, (group + 1) * per_group)
            window = padded[(slice(None), channels) + tuple(
                slice(i * st, i * st + d * (k - 1) + 1, d)
                for i, st, d, k in zip(position, stride, dilate, kernel))]
            out[(slice(None), filt) + position] = (window * w[filt]).reshape(n, -1).sum(axis=1)
    return out


convolutions = st.fixed_dictionaries({
    "spatial": st.integers(1, 3),
    "groups": st.sampled_from([1, 2]),
    "kernel": st.integers(1, 3),
    "stride": st.integers(1, 3),
    "pad": st.integers(0, 2),
    "dilate": st.integers(1, 2),
})


def convolve(case):
    """A random input and weight for `case`, the Convolution arguments, and its output."""
    spatial, groups = case["spatial"], case["groups"]
    extent = case["dilate"] * (case["kernel"] - 1) + 1
    size = max(extent - 2 * case["pad"], 1) + 2
    x = rng.standard_normal((2, 2 * groups) + (size,) * spatial)
    w = rng.standard_normal((2 * groups, 2) + (case["kernel"],) * spatial)
    args = {key: (case[key],) * spatial for key in ("kernel", "stride", "pad", "dilate")}
    args["num_group"] = groups
    out = nd.Convolution(nd.array(x, dtype=np.float64), nd.array(w, dtype=np.float64),
                         no_bias=True, **args)
    return x, w, args, out.asnumpy()


@given(convolutions)
@settings(max_examples=25, deadline=None)
def test_convolution_is_the_windowed_sum_of_its_definition(case):
    x, w, args, out = convolve(case)
    expected = direct_convolution(x, w, args["stride"], args["pad"], args["dilate"],
                                  case["groups"])
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@given(convolutions)
@settings(max_examples=25, deadline=None)
def test_deconvolution_is_the_adjoint_of_convolution(case):
    """<conv(x), y> == <x, deconv(y)> with the same weight: one is the other's transpose."""
    x, w, args, out = convolve(case)
    y = rng.standard_normal(out.shape)
    # The rows and columns a strided convolution never reaches come back through adj.
    adj = tuple(
        (s + 2 * p - d * (k - 1) - 1) % st
        for s, p, d, k, st in zip(x.shape[2:], args["pad"], args["dilate"], args["kernel"],
                                  args["stride"])
    )
    back = nd.Deconvolution(nd.array(y, dtype=np.float64), nd.array(w, dtype=np.float64),
                            no_bias=True, adj=adj, **args).asnumpy()
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(out * y), np.sum(x * back), rtol=1e-10)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.booleans())
@settings(max_examples=25, deadline=None)
def test_max_pooling_takes_each_windows_maximum(kernel, stride, pad, ceil_mode):
    pad = min(pad, kernel // 2)
    x = rng.standard_normal((2, 3, 7, 6))
    out = nd.Pooling(nd.array(x, dtype=np.float64), kernel=(kernel, kernel),
                     stride=(stride, stride), pad=(pad, pad),
                     pooling_convention="full" if ceil_mode else "valid").asnumpy()
    padded = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=-np.inf)
    for i, j in itertools.product(range(out.shape[2]), range(out.shape[3])):
        window = padded[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
        expected = window.max(axis=(2, 3)) if window.size else np.zeros(out.shape[:2])
        np.testing.assert_array_equal(out[:, :, i, j], np.where(np.isinf(expected), 0, expected))
