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


class TwoBitCompression:
    """2-bit quantization with one residual per key (the sender's side keeps them)."""

    type = "2bit"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be greater than 0, got {threshold}")
        self.threshold = float(np.float32(threshold))
        self._residuals: dict[Hashable, np.ndarray] = {}
        # Every byte's four values, so decoding is one table lookup per byte.
        codes = (np.arange(256, dtype=np.uint8)[:, None] >> _SHIFTS) & 0b11
        values = np.zeros((256, 4), dtype=np.float32)
        values[codes == _POSITIVE] = self.threshold
        values[codes == _NEGATIVE] = -self.threshold
        self._table = values
        self._quanta = np.zeros(4, dtype=np.float32)  # what each code sends
        self._quanta[_POSITIVE], self._quanta[_NEGATIVE] = self.threshold, -self.threshold

    def params(self) -> dict[str, Any]:
        return {"type": self.type, "threshold": self.threshold}

    @staticmethod
    def packed_bytes(size: int) -> int:
        """Bytes of the codes of `size` elements."""
        return (size + 3) // 4

    def compress(self, key: Hashable, gradient: np.ndarray) -> np.ndarray:
        """`gradient` plus `key`'s residual, quantized: the codes (uint8, `packed_bytes`
        long). The residual keeps the remainder. Raises `ValueError` for a gradient that is not
        floating point, or whose shape differs from the key's earlier ones."""
        gradient = np.asarray(gradient)
        if gradient.dtype.kind != "f":
            raise ValueError(f"2-bit compression needs a floating-point gradient, got "
                             f"{gradient.dtype} for key {key!r}")
        residual = self._residuals.get(key)
        if residual is None:
            residual = self._residuals[key] = np.zeros(gradient.shape, dtype=np.float32)
        elif residual.shape != gradient.shape:
            raise ValueError(f"gradient of key {key!r} has shape {gradient.shape}, earlier "
                             f"ones {residual.shape}")
        flat = residual.reshape(-1)
        np.add(flat, gradient.reshape(-1), out=flat, casting="unsafe")
        threshold = np.float32(self.threshold)
        codes = np.zeros(4 * self.packed_bytes(flat.size), dtype=np.uint8)
        np.multiply((flat >= threshold).view(np.uint8), _POSITIVE, out=codes[:flat.size])
        codes[:flat.size] |= (flat <= -threshold).view(np.uint8) << 1  # 0b10, _NEGATIVE
        flat -= np.take(self._quanta, codes[:flat.size])
        # Four codes (one per byte of a little-endian word) into one byte, first code highest.
        words = codes.view("<u4") & np.uint32(0x03030303)
        packed = (words << 6) | (words >> 4) | (words >> 14) | (words >> 24)
        return packed.astype(np.uint8)

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
        return codes.view(self._WIRE).astype(dtype).reshape(shape)


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
