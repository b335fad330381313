"""Gradient compression as MXNet's `kvstore.set_gradient_compression` defines it.

2-bit compression quantizes each gradient element to -threshold, 0 or +threshold and keeps
what was not sent, the residual, on the sender: the residual is added to the next gradient of
the same key before quantizing. An element whose residual reaches +threshold sends +threshold
(and the residual drops by it), one at -threshold or below sends -threshold, any other sends 0:
one quantum per push, however large the residual. The codes travel four to a byte (2 bits
each, first element in the high bits): 0b11 is +threshold, 0b10 is -threshold, 0b00 is 0.

`{'type': 'fp16'}`, which MXNet 1.x does not have, sends each gradient rounded to float16 (half
the bytes of float32; beyond float16's range of 65504 an element becomes infinite), with no
residual and no threshold.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

__all__ = ["Codec", "Float16Compression", "TwoBitCompression", "create", "from_wire"]

TYPES = ("2bit", "fp16")
DEFAULT_THRESHOLD = 0.5
_POSITIVE, _NEGATIVE = 0b11, 0b10
_SHIFTS = np.array([6, 4, 2, 0], dtype=np.uint8)
# Elements quantized at a time: a key's scratch arrays stay in the CPU's cache, and a gradient
# of any size costs a few small arrays (no temporary of its size).
_CHUNK = 1 << 16


class _TwoBitKey:
    """One key's residual and the arrays its pushes reuse (every step, not one per step)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.residual = np.zeros(shape, dtype=np.float32)
        size = self.residual.size
        chunk = min(size, _CHUNK)
        self.positive = np.empty(chunk, dtype=np.bool_)
        self.negative = np.empty(chunk, dtype=np.bool_)
        self.sign = np.empty(chunk, dtype=np.int8)
        self.sent = np.empty(chunk, dtype=np.float32)
        # Per element two bytes, (sent anything, sent +threshold): as bits, its 2-bit code.
        self.pairs = np.empty(chunk, dtype=np.uint16)
        self.codes = np.empty(TwoBitCompression.packed_bytes(size), dtype=np.uint8)


class TwoBitCompression:
    """2-bit quantization with one residual per key (the sender's side keeps them)."""

    type = "2bit"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be greater than 0, got {threshold}")
        self.threshold = float(np.float32(threshold))
        self._keys: dict[Hashable, _TwoBitKey] = {}
        # Every byte's four values, so decoding is one table lookup per byte.
        codes = (np.arange(256, dtype=np.uint8)[:, None] >> _SHIFTS) & 0b11
        values = np.zeros((256, 4), dtype=np.float32)
        values[codes == _POSITIVE] = self.threshold
        values[codes == _NEGATIVE] = -self.threshold
        self._table = values

    def params(self) -> dict[str, Any]:
        return {"type": self.type, "threshold": self.threshold}

    @staticmethod
    def packed_bytes(size: int) -> int:
        """Bytes of the codes of `size` elements."""
        return (size + 3) // 4

    def compress(self, key: Hashable, gradient: np.ndarray) -> np.ndarray:
        """`gradient` plus `key`'s residual, quantized: the codes (uint8, `packed_bytes`
        long), in an array of the key's that the key's next push overwrites. The residual
        keeps the remainder. Raises `ValueError` for a gradient that is not floating point,
        or whose shape differs from the key's earlier ones."""
        gradient = np.asarray(gradient)
        if gradient.dtype.kind != "f":
            raise ValueError(f"2-bit compression needs a floating-point gradient, got "
                             f"{gradient.dtype} for key {key!r}")
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _TwoBitKey(gradient.shape)
        elif state.residual.shape != gradient.shape:
            raise ValueError(f"gradient of key {key!r} has shape {gradient.shape}, earlier "
                             f"ones {state.residual.shape}")
        residual, flat = state.residual.reshape(-1), gradient.reshape(-1)
        for start in range(0, residual.size, _CHUNK):
            self._quantize(state, residual[start:start + _CHUNK], flat[start:start + _CHUNK],
                           state.codes[start // 4:(start + _CHUNK) // 4])
        return state.codes

    def _quantize(self, state: _TwoBitKey, residual: np.ndarray, gradient: np.ndarray,
                  codes: np.ndarray) -> None:
        """Add `gradient` to `residual`, take out what is sent and write its codes."""
        size = residual.size
        positive, negative = state.positive[:size], state.negative[:size]
        sign, sent, pairs = state.sign[:size], state.sent[:size], state.pairs[:size]
        threshold = np.float32(self.threshold)
        np.add(residual, gradient, out=residual, casting="unsafe")
        np.greater_equal(residual, threshold, out=positive)
        np.less_equal(residual, -threshold, out=negative)
        np.subtract(positive.view(np.int8), negative.view(np.int8), out=sign)
        np.multiply(sign, threshold, out=sent)  # +threshold, -threshold or +0.0
        np.subtract(residual, sent, out=residual)
        # Little-endian, the pair's first byte is positive + negative, its second positive:
        # packed eight bytes to a byte, they make the codes, first element highest.
        np.multiply(positive, np.uint16(0x0101), out=pairs)
        np.add(pairs, negative, out=pairs)
        codes[:] = np.packbits(pairs.view(np.uint8))

    def decompress(self, codes: np.ndarray, shape: tuple[int, ...],
                   dtype: Any = np.float32) -> np.ndarray:
        """The values that `codes` stand for, as an array of `shape`. Raises `ValueError`
        when the codes are not `packed_bytes` long for that shape."""
        size = int(np.prod(shape))
        codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
        if codes.size != self.packed_bytes(size):
            raise ValueError(f"{codes.size} bytes of 2-bit codes cannot hold {size} values "
                             f"(they take {self.packed_bytes(size)})")
        values = np.take(self._table, codes, axis=0).reshape(-1)[:size]
        return values.reshape(shape).astype(dtype, copy=False)


class Float16Compression:
    """Gradients rounded to float16 (no state: nothing is kept between pushes)."""

    type = "fp16"
    _WIRE = np.dtype("<f2")

    def params(self) -> dict[str, Any]:
        return {"type": self.type}

    @staticmethod
    def packed_bytes(size: int) -> int:
        return 2 * size

    def compress(self, key: Hashable, gradient: np.ndarray) -> np.ndarray:
        """`gradient` as little-endian float16 bytes. Raises `ValueError` for a gradient that
        is not floating point."""
        gradient = np.asarray(gradient)
        if gradient.dtype.kind != "f":
            raise ValueError(f"fp16 compression needs a floating-point gradient, got "
                             f"{gradient.dtype} for key {key!r}")
        with np.errstate(over="ignore"):  # documented: beyond 65504 is infinite
            return gradient.astype(self._WIRE).reshape(-1).view(np.uint8)

    def decompress(self, codes: np.ndarray, shape: tuple[int, ...],
                   dtype: Any = np.float32) -> np.ndarray:
        """The float16 values of `codes` as an array of `shape` and `dtype`. Raises
        `ValueError` when the bytes do not hold that many values."""
        size = int(np.prod(shape))
        codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
        if codes.size != self.packed_bytes(size):
            raise ValueError(f"{codes.size} bytes of float16 cannot hold {size} values "
                             f"(they take {self.packed_bytes(size)})")
        if np.dtype(dtype) == np.float32:
            return _widened(codes.view(self._WIRE)).reshape(shape)
        return codes.view(self._WIRE).astype(dtype).reshape(shape)


def _widened(halves: np.ndarray) -> np.ndarray:
    """float16 `halves` as float32, exactly as `astype` makes them, in a few vectorized passes:
    NumPy casts float16 one element at a time, several times slower."""
    values = np.empty(halves.shape, dtype=np.float32)
    bits, signed = values.view(np.uint32), values.view(np.int32)
    np.left_shift(halves.view("<u2"), 16, out=bits, dtype=np.uint32)
    # The arithmetic shift puts exponent and mantissa where float32 has them; the mask keeps
    # the sign bit alone of its copies.
    np.right_shift(signed, 3, out=signed)
    np.bitwise_and(bits, np.uint32(0x8FFFE000), out=bits)
    # Scaling by 2**112 turns float16's exponent bias into float32's, subnormals included.
    np.multiply(values, np.float32(2.0**112), out=values)
    # Infinities and NaNs came out finite, of magnitude 2**16 or more: those arrays are cast.
    if values.size and (values.max() >= 2.0**16 or values.min() <= -(2.0**16)):
        np.copyto(values, halves)
    return values


Codec = TwoBitCompression | Float16Compression


def from_wire(type_name: str, threshold: float) -> Codec:
    """The compression a `GradientCompression` message names (fp16 ignores the threshold).
    Raises `ValueError` as `create` does."""
    if type_name == Float16Compression.type:
        return Float16Compression()
    return create({"type": type_name, "threshold": threshold})


def create(params: Mapping[str, Any]) -> Codec:
    """The compression `params` ask for: `{'type': '2bit', 'threshold': t}` (t defaults to
    0.5) or `{'type': 'fp16'}`. Raises `TypeError` for params that are not a dict,
    `ValueError` for a missing or unknown type, a threshold that is not a number greater than
    0, or a threshold given to fp16."""
    if not isinstance(params, Mapping):
        raise TypeError(f"compression params must be a dict such as "
                        f"{{'type': '2bit', 'threshold': 0.5}}, got {params!r}")
    unknown = set(params) - {"type", "threshold"}
    if unknown:
        raise ValueError(f"unknown gradient compression parameters {sorted(unknown)}")
    if "type" not in params:
        raise ValueError("gradient compression params need a 'type', e.g. '2bit'")
    if params["type"] not in TYPES:
        raise ValueError(f"Unknown type for gradient compression {params['type']!r}; "
                         f"supported: {list(TYPES)}")
    if params["type"] == Float16Compression.type:
        if "threshold" in params:
            raise ValueError("fp16 compression takes no threshold")
        return Float16Compression()
    threshold = params.get("threshold", DEFAULT_THRESHOLD)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    return TwoBitCompression(threshold)
