"""Records what MXNet 1.9.1 computes with 2-bit gradient compression, for the tests to match.

Run with an interpreter that has mxnet 1.9.1 (never a dependency of paramstore):

    /path/to/mxnet-venv/bin/python tests/engine/mxnet_two_bit.py

Each case pushes a sequence of gradients to one key with `set_gradient_compression` and pulls
after every push, with no optimizer, so the pulled value is the sum of what the workers' quantized
gradients stand for. `dist_sync` cases run a ps-lite scheduler, one server and the workers as
processes on loopback; the `device` case pushes a list of two arrays (two CPU contexts), each
quantized with its own residual. The inputs and the pulled values go to two_bit_mxnet.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("two_bit_mxnet.json")


def cases() -> list[dict]:
    rng = np.random.default_rng(7)

    def normal(shape: tuple[int, ...], scale: float) -> list:
        return (rng.normal(size=shape) * scale).astype(np.float32).tolist()

    return [
        # One quantum per push however large the residual; exactly the threshold is sent.
        {"kvstore": "dist_sync", "workers": 1, "threshold": 0.5, "shape": [6],
         "pushes": [[[0.3, -0.6, 1.2, -0.2, 0.7, 0.5]], [[0.3, -0.6, 0.1, -0.4, 0.0, -0.5]],
                    [[0.0, 0.0, 0.0, 0.0, 0.0, -0.5]]]},
        # Not a multiple of 4 or 16 elements, several rows.
        {"kvstore": "dist_sync", "workers": 1, "threshold": 0.25, "shape": [3, 37],
         "pushes": [[normal((3, 37), 0.3)] for _ in range(4)]},
        # Two workers, each with its own residual; the server sums what they stand for.
        {"kvstore": "dist_sync", "workers": 2, "threshold": 0.3, "shape": [19],
         "pushes": [[normal((19,), 0.4) for _ in range(2)] for _ in range(3)]},
        {"kvstore": "device", "workers": 2, "threshold": 0.5, "shape": [9],
         "pushes": [[normal((9,), 0.6) for _ in range(2)] for _ in range(3)]},
    ]


def pulled_values(case: dict) -> list:
    import mxnet as mx

    kv = mx.kv.create(case["kvstore"])
    rank = kv.rank
    kv.set_gradient_compression({"type": "2bit", "threshold": case["threshold"]})
    kv.init(0, mx.nd.zeros(case["shape"]))
    out = mx.nd.zeros(case["shape"])
    pulled = []
    for gradients in case["pushes"]:
        if case["kvstore"] == "device":
            kv.push(0, [mx.nd.array(g, ctx=mx.cpu(i)) for i, g in enumerate(gradients)])
        else:
            kv.push(0, mx.nd.array(gradients[rank]))
        kv.pull(0, out=out)
        pulled.append(out.asnumpy().tolist())
    return pulled


def run_dist_sync(case: dict) -> list:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": str(port),
           "DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": str(case["workers"]),
           "DMLC_INTERFACE": "lo", "TWO_BIT_CASE": json.dumps(case)}
    helpers = [subprocess.Popen([sys.executable, "-c", "import mxnet"],
                                env={**env, "DMLC_ROLE": role})
               for role in ("scheduler", "server")]
    workers = [subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True,
                                env={**env, "DMLC_ROLE": "worker"})
               for _ in range(case["workers"])]
    results = [json.loads(worker.communicate(timeout=300)[0].strip().splitlines()[-1])
               for worker in workers]
    for helper in helpers:
        helper.wait(timeout=300)
    if any(result != results[0] for result in results):
        raise RuntimeError("the workers pulled different values")
    return results[0]


def main() -> None:
    if os.environ.get("DMLC_ROLE") == "worker":
        print(json.dumps(pulled_values(json.loads(os.environ["TWO_BIT_CASE"]))))
        return
    recorded = []
    for case in cases():
        pulled = run_dist_sync(case) if case["kvstore"] == "dist_sync" else pulled_values(case)
        recorded.append({**case, "pulled": pulled})
    import mxnet as mx

    OUT.write_text(json.dumps({"mxnet": mx.__version__, "cases": recorded}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
