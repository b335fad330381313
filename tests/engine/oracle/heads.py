"""Head gradients for recorded backwards: every output element weighted differently."""

import numpy as np


def head_for(shape: tuple) -> np.ndarray:
    count = int(np.prod(shape))
    return (1.0 + (np.arange(count) % 7) / 4.0).reshape(shape).astype(np.float32)
