"""What gradient compression costs the CPU, against a plain float32 sum of the same arrays.

The gradients are those of the 784-1024-1024-10 MLP of `bench/distributed.py` (1.86 M
float32 values in six keys). Each round times, in CPU ms for all the keys: a worker's part
(2-bit quantization with its residual, or rounding to float16) and the server's part for one
worker (decoding into float32), beside the baseline, `np.add` of two gradients into a third
array (what the server does per worker without compression). Rounds interleave so that a busy
machine shifts all of them alike; the table gives medians and each one's ratio to the sum.

    python bench/compression.py [--rounds 15] [--repeat 10] [--threshold 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

# One BLAS thread, as the workers and the server of bench/distributed.py run.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings, which it reads on import)

from paramstore import compression  # noqa: E402

SHAPES = ((1024, 784), (1024,), (1024, 1024), (1024,), (10, 1024), (10,))


def _cpu_ms(work: Callable[[], object], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        work()
    return (time.process_time() - started) / repeat * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    gradients = [rng.normal(scale=args.threshold, size=shape).astype(np.float32)
                 for shape in SHAPES]
    sums = [np.empty_like(gradient) for gradient in gradients]
    two_bit = compression.TwoBitCompression(args.threshold)
    fp16 = compression.Float16Compression()
    two_bit_codes = [two_bit.compress(key, g).copy() for key, g in enumerate(gradients)]
    fp16_codes = [fp16.compress(key, g) for key, g in enumerate(gradients)]

    cases: dict[str, Callable[[], object]] = {
        "float32 sum (baseline)": lambda: [np.add(g, g, out=s) for g, s in zip(gradients, sums)],
        "2bit compress (worker)": lambda: [two_bit.compress(key, g)
                                           for key, g in enumerate(gradients)],
        "2bit decompress (server)": lambda: [two_bit.decompress(c, g.shape)
                                             for c, g in zip(two_bit_codes, gradients)],
        "fp16 compress (worker)": lambda: [fp16.compress(key, g)
                                           for key, g in enumerate(gradients)],
        "fp16 decompress (server)": lambda: [fp16.decompress(c, g.shape)
                                             for c, g in zip(fp16_codes, gradients)],
    }
    for work in cases.values():
        work()  # every buffer allocated and every page touched before the clock runs
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, work in cases.items():
            times[name].append(_cpu_ms(work, args.repeat))

    size = sum(gradient.size for gradient in gradients)
    baseline = statistics.median(times["float32 sum (baseline)"])
    print(f"{size / 1e6:.2f} M float32 gradients, median of {args.rounds} rounds of "
          f"{args.repeat}")
    print(f"{'':<28}{'CPU ms':>8}{'vs sum':>8}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<28}{median:>8.2f}{median / baseline:>8.1f}")


if __name__ == "__main__":
    main()
