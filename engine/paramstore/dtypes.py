"""Element types beyond NumPy's own: bfloat16, through ml_dtypes (the dtype package JAX uses).

ml_dtypes takes a second or more to import on a busy machine, so it is imported only when a
bfloat16 is first met: a name resolved here, or a BF16 tensor in a file. An array that already
is bfloat16 needs nothing: whoever made it imported ml_dtypes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

BFLOAT16 = "bfloat16"


def numpy_dtype(dtype: Any) -> np.dtype:
    """`np.dtype(dtype)`, "bfloat16" included."""
    if isinstance(dtype, str):
        return _named_dtype(dtype)
    return np.dtype(dtype)


# Bounded: names may come from the wire. Parsing a name costs about a microsecond, which adds
# up over a pull of many small parameters.
@functools.lru_cache(maxsize=64)
def _named_dtype(name: str) -> np.dtype:
    if name == BFLOAT16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
