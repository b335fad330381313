"""Each conv, pool, activation and normalization case replayed against MXNet 1.9.1's numbers.

`oracle/record_layers.py` recorded them (see there to regenerate): the layer's reprs (before and
after the first forward pass) and parameter names, its output and the gradients of
`sum(head * out)` for the input and each learnt parameter, and which inputs MXNet refuses.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from paramstore import EngineError, autograd, nd
from paramstore.gluon import nn

ORACLE = Path(__file__).parent / "oracle"
RECORDED = json.loads((ORACLE / "layers.json").read_text())["cases"]
ARRAYS = np.load(ORACLE / "layers.npz")
LAYERS = [name for name, case in RECORDED.items() if case["kind"] == "layer"]
OPS = [name for name, case in RECORDED.items() if case["kind"] == "op"]

pytestmark = pytest.mark.usefixtures("fresh_names")

# MXNet 1.9.1's SELU backward uses `scale * (out + alpha)` below 0, not the derivative
# `scale * alpha * exp(x)`; paramstore sends the true gradient (the finite-difference check
# in test_gradients.py holds it), so only the positive side is compared with MXNet.
TRUE_GRADIENT_BELOW_ZERO = {"selu"}


def build(case):
    return getattr(nn, case["name"])(*case["args"], **case["kwargs"])


def close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=2e-4, atol=2e-5, err_msg=what)


def run_layer(name):
    case = RECORDED[name]
    block = build(case)
    assert repr(block) == case["repr_before_forward"]
    block.initialize()
    x = nd.array(ARRAYS[f"{name}/x"])
    block(x)
    params = block.collect_params()
    for key, param in params.items():
        param.set_data(nd.array(ARRAYS[f"{name}/param/{key}"]))
    x.attach_grad()
    with autograd.record():
        out = block(x)
    out.backward(nd.array(ARRAYS[f"{name}/head"]))
    return block, params, x, out


@pytest.mark.parametrize("name", LAYERS)
def test_layer_output_and_gradients_match_mxnet(name):
    _, params, x, out = run_layer(name)
    close(out.asnumpy(), ARRAYS[f"{name}/out"], "output")
    compared = x.asnumpy() > 0 if name in TRUE_GRADIENT_BELOW_ZERO else slice(None)
    close(x.grad.asnumpy()[compared], ARRAYS[f"{name}/grad/x"][compared], "input gradient")
    for key, param in params.items():
        if param.grad_req != "null":
            close(param.grad().asnumpy(), ARRAYS[f"{name}/grad/{key}"], f"gradient of {key}")


@pytest.mark.parametrize("name", LAYERS)
def test_layer_repr_and_parameters_match_gluon(name):
    block, params, _, _ = run_layer(name)
    case = RECORDED[name]
    assert repr(block) == case["repr"]
    assert {key: list(p.shape) for key, p in params.items()} == case["params"]
    assert {key: p.grad_req for key, p in params.items()} == case["grad_req"]


@pytest.mark.parametrize("name", [n for n in LAYERS if "bad_shape" in RECORDED[n]])
def test_layer_refuses_a_badly_shaped_input_with_the_engines_error(name):
    block, _, _, _ = run_layer(name)
    with pytest.raises(EngineError):
        block(nd.ones(tuple(RECORDED[name]["bad_shape"])))


@pytest.mark.parametrize("name", OPS)
def test_operator_output_and_gradients_match_mxnet(name):
    case = RECORDED[name]
    x = nd.array(ARRAYS[f"{name}/x"])
    params = [nd.array(ARRAYS[f"{name}/param/{key}"]) for key in case["params"]]
    for a in [x, *params]:
        a.attach_grad()
    with autograd.record():
        out = getattr(nd, case["name"])(x, *params, **case["kwargs"])
    out.backward(nd.array(ARRAYS[f"{name}/head"]))
    close(out.asnumpy(), ARRAYS[f"{name}/out"], "output")
    close(x.grad.asnumpy(), ARRAYS[f"{name}/grad/x"], "input gradient")
    for key, a in zip(case["params"], params):
        close(a.grad.asnumpy(), ARRAYS[f"{name}/grad/{key}"], f"gradient of {key}")
