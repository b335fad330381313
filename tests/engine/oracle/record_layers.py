"""Record what MXNet 1.9.1 computes for the conv, pool, activation and normalization layers.

Run with a Python that has `mxnet==1.9.1` (never a dependency of paramstore):

    /path/to/mxnet-venv/bin/python tests/engine/oracle/record_layers.py

It writes `layers.json` (each case: how to build it, Gluon's repr and parameter names, and MXNet's
error for bad input) and `layers.npz` (inputs, parameter values, head gradient, output and
gradients) beside this file; `tests/engine/test_oracle_layers.py` replays every case on paramstore.
A case is a layer (`nn.<layer>(*args, **kwargs)`) or an operator (`nd.<op>(x, *params, **kwargs)`).
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, nd
from mxnet.gluon import nn

HERE = Path(__file__).parent


def layer(name, args, kwargs, shape, params=None):
    """`params`: extra parameters to draw for an operator case (name -> shape)."""
    return {"kind": "layer", "name": name, "args": args, "kwargs": kwargs, "shape": shape}


def op(name, kwargs, shape, params=None):
    return {"kind": "op", "name": name, "args": [], "kwargs": kwargs, "shape": shape,
            "params": params or {}}


CASES = {
    # convolutions
    "conv1d": layer("Conv1D", [4, 3], {}, [2, 3, 9]),
    "conv1d_strided_dilated": layer(
        "Conv1D", [4, 3], {"strides": 2, "padding": 1, "dilation": 2}, [2, 2, 11]),
    "conv2d_lenet": layer("Conv2D", [6, 5], {}, [2, 1, 12, 12]),
    "conv2d_everything": layer(
        "Conv2D", [6, [3, 5]], {"strides": [2, 1], "padding": [1, 2], "dilation": [2, 1],
                                "groups": 2, "activation": "relu", "use_bias": False},
        [2, 4, 11, 10]),
    "conv2d_in_channels": layer("Conv2D", [3, 3], {"in_channels": 2, "activation": "tanh"},
                                [1, 2, 5, 5]),
    "conv1d_groups_deferred": layer("Conv1D", [6, 2], {"groups": 3, "activation": "sigmoid"},
                                    [2, 3, 7]),
    "conv3d_dilated_no_bias": layer("Conv3D", [2, [1, 2, 2]], {"dilation": [1, 2, 1],
                                                              "use_bias": False},
                                    [1, 2, 3, 6, 4]),
    "conv3d": layer("Conv3D", [2, 3], {"strides": 2, "padding": 1}, [1, 2, 5, 6, 5]),
    "conv1d_transpose": layer(
        "Conv1DTranspose", [3, 3], {"strides": 2, "padding": 1, "output_padding": 1}, [2, 2, 5]),
    "conv2d_transpose": layer(
        "Conv2DTranspose", [4, 4], {"strides": 2, "padding": 1, "groups": 2, "in_channels": 4},
        [2, 4, 5, 5]),
    "conv2d_transpose_dilated": layer(
        "Conv2DTranspose", [2, 3], {"dilation": 2, "output_padding": [0, 0], "in_channels": 3},
        [1, 3, 4, 5]),
    "conv3d_transpose": layer("Conv3DTranspose", [2, 2], {"strides": 2}, [1, 3, 3, 2, 3]),
    # pooling
    "maxpool1d": layer("MaxPool1D", [], {}, [2, 3, 9]),
    "maxpool2d": layer("MaxPool2D", [], {}, [2, 3, 8, 8]),
    "maxpool2d_ceil": layer("MaxPool2D", [3, 2, 1], {"ceil_mode": True}, [2, 2, 8, 7]),
    "maxpool2d_nhwc": layer("MaxPool2D", [2], {"layout": "NHWC"}, [1, 6, 4, 3]),
    "maxpool1d_nwc_ceil": layer("MaxPool1D", [3, 2], {"layout": "NWC", "ceil_mode": True},
                                [2, 8, 3]),
    "avgpool1d_ceil": layer("AvgPool1D", [2, 2, 1], {"ceil_mode": True}, [2, 3, 6]),
    "globalavgpool2d_nhwc": layer("GlobalAvgPool2D", [], {"layout": "NHWC"}, [2, 3, 4, 5]),
    "maxpool3d": layer("MaxPool3D", [2, 1, 1], {}, [1, 2, 3, 4, 3]),
    "avgpool1d": layer("AvgPool1D", [3, 2, 1], {}, [2, 3, 8]),
    "avgpool2d": layer("AvgPool2D", [], {}, [2, 3, 6, 6]),
    "avgpool2d_ceil_exclude_pad": layer(
        "AvgPool2D", [3, 2, 1], {"ceil_mode": True, "count_include_pad": False}, [2, 2, 8, 7]),
    "avgpool2d_padding_only_windows": layer(
        "AvgPool2D", [2, 2, 1], {"ceil_mode": True}, [1, 1, 5, 5]),
    "avgpool3d": layer("AvgPool3D", [2], {"padding": 1, "count_include_pad": False},
                       [1, 2, 3, 4, 3]),
    "globalmaxpool1d": layer("GlobalMaxPool1D", [], {}, [2, 3, 5]),
    "globalmaxpool2d": layer("GlobalMaxPool2D", [], {}, [2, 3, 4, 5]),
    "globalmaxpool3d": layer("GlobalMaxPool3D", [], {}, [1, 2, 3, 4, 2]),
    "globalavgpool1d": layer("GlobalAvgPool1D", [], {}, [2, 3, 5]),
    "globalavgpool2d": layer("GlobalAvgPool2D", [], {}, [2, 3, 4, 5]),
    "globalavgpool3d": layer("GlobalAvgPool3D", [], {}, [1, 2, 3, 4, 2]),
    "reflectionpad2d": layer("ReflectionPad2D", [2], {}, [2, 2, 4, 5]),
    "reflectionpad2d_uneven": layer("ReflectionPad2D", [[0, 0, 0, 0, 1, 2, 3, 0]], {},
                                    [1, 2, 4, 5]),
    # activations
    "elu": layer("ELU", [], {}, [3, 4]),
    "elu_alpha": layer("ELU", [0.5], {}, [3, 4]),
    "selu": layer("SELU", [], {}, [3, 4]),
    "prelu": layer("PReLU", [], {}, [3, 4]),
    "prelu_channels": layer("PReLU", [], {"in_channels": 3}, [2, 3, 4]),
    "gelu": layer("GELU", [], {}, [3, 4]),
    "swish": layer("Swish", [], {}, [3, 4]),
    "swish_beta": layer("Swish", [2.0], {}, [3, 4]),
    "softsign": layer("Activation", ["softsign"], {}, [3, 4]),
    # normalizations
    "instancenorm": layer("InstanceNorm", [], {}, [2, 3, 4, 5]),
    "instancenorm_scaled_axis2": layer("InstanceNorm", [], {"axis": 2, "scale": True},
                                       [2, 3, 4]),
    "instancenorm_in_channels": layer("InstanceNorm", [], {"in_channels": 3, "center": False},
                                      [2, 3, 6]),
    "instancenorm_last_axis": layer("InstanceNorm", [], {"axis": -1, "scale": True},
                                    [2, 4, 3]),
    "groupnorm_no_center": layer("GroupNorm", [3], {"center": False}, [2, 6, 2]),
    "groupnorm": layer("GroupNorm", [], {}, [2, 3, 4]),
    "groupnorm_groups": layer("GroupNorm", [2], {"epsilon": 1e-3}, [2, 4, 3, 3]),
    "hybridlambda": layer("HybridLambda", ["tanh"], {}, [3, 4]),
    "lambda": layer("Lambda", ["softsign"], {}, [3, 4]),
    # operators
    "pooling_sum": op("Pooling", {"kernel": [2, 2], "stride": [1, 2], "pool_type": "sum"},
                      [2, 2, 5, 6]),
    "pad_constant": op("pad", {"mode": "constant", "pad_width": [0, 0, 0, 0, 1, 2, 0, 3],
                               "constant_value": 1.5}, [2, 2, 3, 4]),
    "pad_edge_5d": op("pad", {"mode": "edge", "pad_width": [0, 0, 0, 0, 1, 0, 2, 2, 0, 1]},
                      [1, 2, 3, 3, 4]),
    "deconvolution_adj": op(
        "Deconvolution", {"kernel": [3, 3], "stride": [3, 2], "pad": [1, 0], "adj": [2, 1],
                          "num_filter": 2, "no_bias": True},
        [1, 3, 3, 4], {"weight": [3, 2, 3, 3]}),
    "leakyrelu_leaky": op("LeakyReLU", {"act_type": "leaky", "slope": 0.1}, [3, 4]),
    "leakyrelu_prelu": op("LeakyReLU", {"act_type": "prelu"}, [2, 3, 4], {"gamma": [3]}),
    "instancenorm_op": op("InstanceNorm", {"eps": 1e-3}, [2, 3, 5],
                          {"gamma": [3], "beta": [3]}),
    "groupnorm_op": op("GroupNorm", {"num_groups": 3, "eps": 1e-5}, [2, 6, 4],
                       {"gamma": [3], "beta": [3]}),
}

# Inputs a layer refuses, and the start of MXNet's error.
BAD_INPUTS = {
    "conv2d_lenet": [2, 12, 12],
    "conv2d_in_channels": [1, 3, 5, 5],
    "maxpool2d": [2, 3, 8],
    "conv1d_transpose": [2, 2, 5, 1],
    "globalavgpool2d": [2, 3, 4],
}


def build(case):
    if case["kind"] == "layer":
        return getattr(nn, case["name"])(*case["args"], **case["kwargs"])
    return None


def run(name, case, rng, arrays):
    x = rng.standard_normal(case["shape"]).astype(np.float32)
    arrays[f"{name}/x"] = x
    with mx.name.NameManager():
        block = build(case)
    entry = dict(case)
    inputs = [nd.array(x)]
    if block is not None:
        entry["repr_before_forward"] = repr(block)
        block.initialize()
        block(inputs[0])  # deferred shapes
        params = block.collect_params()
        entry["repr"] = repr(block)
        entry["params"] = {key: list(p.shape) for key, p in params.items()}
        entry["grad_req"] = {key: p.grad_req for key, p in params.items()}
        for key, param in params.items():
            value = rng.uniform(0.5, 1.5, param.shape).astype(np.float32)
            if key.endswith("alpha"):
                value -= 0.75  # PReLU slopes of both signs
            param.set_data(nd.array(value))
            arrays[f"{name}/param/{key}"] = value
        variables = {key: p.data() for key, p in params.items() if p.grad_req != "null"}
    else:
        extra = []
        for key, shape in case["params"].items():
            value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            arrays[f"{name}/param/{key}"] = value
            extra.append(nd.array(value))
        variables = {key: a for key, a in zip(case["params"], extra)}
        inputs += extra
    # A layer's parameters have their gradients already; the input and an operator's don't.
    for a in inputs:
        a.attach_grad()
    with autograd.record():
        out = block(inputs[0]) if block is not None else getattr(nd, case["name"])(
            *inputs, **case["kwargs"])
    head = rng.uniform(0.5, 1.5, out.shape).astype(np.float32)
    out.backward(nd.array(head))
    arrays[f"{name}/head"] = head
    arrays[f"{name}/out"] = out.asnumpy()
    arrays[f"{name}/grad/x"] = inputs[0].grad.asnumpy()
    for key, a in variables.items():
        arrays[f"{name}/grad/{key}"] = (
            block.collect_params()[key].grad() if block is not None else a.grad).asnumpy()
    if name in BAD_INPUTS:
        try:
            block(nd.ones(BAD_INPUTS[name]))
        except mx.base.MXNetError as error:
            entry["bad_shape"] = BAD_INPUTS[name]
            entry["bad_error"] = str(error).strip().splitlines()[-1][:200]
    return entry


def main() -> None:
    rng = np.random.default_rng(20260913)
    arrays: dict[str, np.ndarray] = {}
    recorded = {name: run(name, case, rng, arrays) for name, case in CASES.items()}
    with open(HERE / "layers.json", "w") as f:
        json.dump({"mxnet": mx.__version__, "cases": recorded}, f, indent=1)
        f.write("\n")
    np.savez_compressed(HERE / "layers.npz", **arrays)
    print(f"recorded {len(recorded)} cases with MXNet {mx.__version__}")


if __name__ == "__main__":
    main()
