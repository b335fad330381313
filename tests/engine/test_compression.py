"""2-bit gradient compression: MXNet 1.9.1's values (recorded by mxnet_two_bit.py), errors,
and the Trainer's `compression_params` hook."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paramstore import autograd, compression, gluon, kvstore, nd

RECORDED = json.loads(Path(__file__).with_name("two_bit_mxnet.json").read_text())["cases"]


@pytest.mark.parametrize("case", RECORDED, ids=lambda case: f"{case['kvstore']}-{case['shape']}")
def test_local_kvstore_pulls_what_mxnet_pulls(case):
    # A list pushed for one key is quantized part by part, as MXNet's workers or devices are.
    kv = kvstore.create()
    kv.set_gradient_compression({"type": "2bit", "threshold": case["threshold"]})
    kv.init(0, nd.zeros(tuple(case["shape"])))
    out = nd.zeros(tuple(case["shape"]))
    for gradients, expected in zip(case["pushes"], case["pulled"]):
        kv.push(0, [nd.array(np.array(g, dtype=np.float32)) for g in gradients])
        kv.pull(0, out=out)
        np.testing.assert_array_equal(out.asnumpy(), np.array(expected, dtype=np.float32))


def test_codes_take_two_bits_per_element_and_decode_to_the_sent_values():
    codec = compression.TwoBitCompression(0.25)
    gradient = np.array([0.3, -0.3, 0.1, 0.25, -0.25, 0.0, 7.0], dtype=np.float32)
    codes = codec.compress("w", gradient)
    assert codes.dtype == np.uint8 and codes.size == 2
    decoded = codec.decompress(codes, gradient.shape)
    assert decoded.tolist() == [0.25, -0.25, 0.0, 0.25, -0.25, 0.0, 0.25]


def test_the_residual_is_kept_per_key():
    codec = compression.TwoBitCompression(0.5)
    codec.compress("a", np.array([0.4], dtype=np.float32))
    assert codec.decompress(codec.compress("b", np.array([0.4], np.float32)), (1,)).tolist() \
        == [0.0]
    assert codec.decompress(codec.compress("a", np.array([0.4], np.float32)), (1,)).tolist() \
        == [0.5]


def test_decompress_refuses_codes_of_the_wrong_length():
    with pytest.raises(ValueError, match="3 bytes of 2-bit codes cannot hold 5 values"):
        compression.TwoBitCompression().decompress(np.zeros(3, np.uint8), (5,))


def test_compress_refuses_an_integer_gradient():
    with pytest.raises(ValueError, match="floating-point gradient, got int64"):
        compression.TwoBitCompression().compress("w", np.array([1, 2]))


@pytest.mark.parametrize("params, error, message", [
    ({"type": "2bit", "threshold": 0}, ValueError, "threshold must be greater than 0"),
    ({"type": "2bit", "threshold": -1}, ValueError, "threshold must be greater than 0"),
    ({"type": "3bit"}, ValueError, "Unknown type for gradient compression '3bit'"),
    ({"threshold": 0.5}, ValueError, "need a 'type'"),
    ({"type": "2bit", "threshold": "x"}, ValueError, "threshold must be a number"),
    ({"type": "2bit", "bits": 2}, ValueError, r"unknown gradient compression parameters"),
    ("2bit", TypeError, "must be a dict"),
])
def test_bad_compression_params_are_refused(params, error, message):
    kv = kvstore.create()
    with pytest.raises(error, match=message):
        kv.set_gradient_compression(params)


def test_the_threshold_defaults_to_one_half():
    assert compression.create({"type": "2bit"}).params() == {"type": "2bit", "threshold": 0.5}


def _one_sgd_step(kv, compression_params):
    net = gluon.nn.Dense(1, in_units=4, use_bias=False)
    net.initialize("zeros")
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0}, kvstore=kv,
                            compression_params=compression_params)
    with autograd.record():
        out = net(nd.array([[0.3, 0.6, -0.6, 1.2]]))
    out.backward()
    trainer.step(1)
    return net.weight.data().asnumpy().reshape(-1).tolist()


def test_trainer_hands_compression_params_to_its_kvstore():
    # The gradient is the input; lr 1 makes the weight minus what the quantized gradient sent.
    assert _one_sgd_step(kvstore.create(), {"type": "2bit", "threshold": 0.5}) \
        == [0.0, -0.5, 0.5, -0.5]


def test_a_local_trainer_ignores_compression_params_as_gluon_does():
    assert _one_sgd_step("device", {"type": "2bit", "threshold": 0.5}) \
        == pytest.approx([-0.3, -0.6, 0.6, -1.2])


def test_fp16_sends_each_gradient_rounded_to_float16_and_keeps_nothing():
    codec = compression.create({"type": "fp16"})
    gradient = np.array([0.1, -3.0e-5, 70000.0, 1.0], dtype=np.float32)
    codes = codec.compress("w", gradient)
    assert codes.size == 8
    expected = np.array([np.float16(0.1), np.float16(-3.0e-5), np.inf, 1.0], np.float32)
    assert codec.decompress(codes, (4,)).tolist() == expected.tolist()
    assert codec.decompress(codec.compress("w", gradient), (4,)).tolist() == expected.tolist()


def test_local_kvstore_with_fp16_stores_the_sum_of_the_rounded_parts():
    kv = kvstore.create()
    kv.set_gradient_compression({"type": "fp16"})
    kv.init("w", nd.zeros(2))
    parts = [np.array([0.1, 1e-4], np.float32), np.array([0.2, 3.0], np.float32)]
    kv.push("w", [nd.array(part) for part in parts])
    out = nd.zeros(2)
    kv.pull("w", out=out)
    expected = sum(part.astype(np.float16).astype(np.float32) for part in parts)
    np.testing.assert_array_equal(out.asnumpy(), expected)


def test_fp16_takes_no_threshold():
    with pytest.raises(ValueError, match="fp16 compression takes no threshold"):
        compression.create({"type": "fp16", "threshold": 0.5})


# ---- the vectorized codecs against the definitions, element by element ---------------------

def _two_bit_by_definition(residual, gradient, threshold):
    """The codes and the new residual as the module docstring defines them, one plain pass."""
    with np.errstate(invalid="ignore"):  # infinity plus its opposite: NaN, as in the codec
        total = (residual + gradient).astype(np.float32)
    t = np.float32(threshold)
    codes = np.where(total >= t, 0b11, np.where(total <= -t, 0b10, 0b00)).astype(np.uint8)
    sent = np.where(codes == 0b11, t, np.where(codes == 0b10, -t, np.float32(0)))
    padded = np.zeros(4 * ((codes.size + 3) // 4), np.uint8)
    padded[:codes.size] = codes
    quads = padded.reshape(-1, 4)
    packed = (quads[:, 0] << 6) | (quads[:, 1] << 4) | (quads[:, 2] << 2) | quads[:, 3]
    return packed.astype(np.uint8), (total - sent.astype(np.float32)).astype(np.float32)


def _same_floats(actual, expected):
    """Equal bit for bit, NaNs equal to NaNs (whatever their payload)."""
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    assert np.array_equal(actual[~nan].view(np.uint32), expected[~nan].view(np.uint32))


@st.composite
def _gradients(draw, threshold):
    """Pushes of one key: random values with edge ones (exactly +-threshold, ties of a
    threshold and a residual, infinities, NaN, subnormals) at random places; lengths that leave
    the last byte of codes part-filled, and some past the chunk the codec works in."""
    size = draw(st.one_of(st.integers(1, 40), st.sampled_from([65535, 65536 + 5, 2 * 65536 + 3])))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float16, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = np.float32(threshold)
    edges = np.array([t, -t, t / 2, -t / 2, np.nextafter(t, 0), -np.nextafter(t, 0), 0.0, -0.0,
                      np.inf, -np.inf, np.nan, 1e-45, 3 * t, 65504.0], dtype=np.float32)
    if not draw(st.booleans()):  # NaN and infinity stay in a residual for good: not always
        edges = edges[np.isfinite(edges)]
    pushes = []
    for _ in range(draw(st.integers(1, 4))):
        values = (rng.normal(size=size) * draw(st.sampled_from([0.1, 1.0, 10.0])) * t)
        values[rng.integers(0, size, size=max(1, size // 8))] = rng.choice(edges,
                                                                           max(1, size // 8))
        with np.errstate(over="ignore", invalid="ignore"):
            pushes.append(values.astype(dtype))
    return pushes


@settings(max_examples=60, deadline=None)
@given(data=st.data(), threshold=st.sampled_from([0.5, 0.25, 1e-3, 3.0, 0.1]))
def test_two_bit_codes_and_residuals_are_the_definitions(data, threshold):
    codec = compression.TwoBitCompression(threshold)
    residual = None
    for gradient in data.draw(_gradients(threshold)):
        if residual is None:
            residual = np.zeros(gradient.shape, np.float32)
        expected_codes, residual = _two_bit_by_definition(residual, gradient, threshold)
        with np.errstate(over="ignore", invalid="ignore"):
            codes = codec.compress("w", gradient)
        np.testing.assert_array_equal(codes, expected_codes)
        sent = codec.decompress(codes, gradient.shape)
        t = np.float32(codec.threshold)
        assert set(np.unique(sent).tolist()) <= {-t, 0.0, t}
        _same_floats(codec._keys["w"].residual, residual)


def test_codes_of_one_key_stay_while_another_key_is_compressed():
    codec = compression.TwoBitCompression(0.5)
    first = codec.compress("a", np.array([1.0, -1.0, 0.0], np.float32))
    codec.compress("b", np.array([-1.0, 1.0, 1.0], np.float32))
    assert codec.decompress(first, (3,)).tolist() == [0.5, -0.5, 0.0]


def test_every_float16_decompresses_to_what_astype_makes():
    # All 65536 bit patterns: normals, subnormals, zeros, infinities, NaNs of any payload.
    halves = np.arange(2**16, dtype=np.uint16)
    codec = compression.Float16Compression()
    decoded = codec.decompress(halves.view(np.uint8), (2**16,))
    expected = halves.view(np.float16).astype(np.float32)
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded.view(np.uint32), expected.view(np.uint32))
    finite = halves[(halves & 0x7C00) != 0x7C00]  # an array without them takes the fast path
    assert np.array_equal(codec.decompress(finite.view(np.uint8), finite.shape).view(np.uint32),
                          finite.view(np.float16).astype(np.float32).view(np.uint32))


@settings(max_examples=40, deadline=None)
@given(values=hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=9),
                         elements=st.floats(width=32, allow_nan=True)),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_fp16_round_trips_as_astype_does(values, dtype):
    codec = compression.Float16Compression()
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(dtype)
        decoded = codec.decompress(codec.compress("w", values), values.shape, dtype)
    assert decoded.shape == values.shape and decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(np.signbit(decoded), np.signbit(expected))
