"""Record MXNet 1.9.1's answers to the cases of this folder, for the tests to compare with.

Run with the side venv that has MXNet (never a project dependency):

    /work/oracle-venv/bin/python tests/engine/oracle/record.py

It rewrites, beside this file:

- `arrays.json`: for each case of `array_cases.py`, every output's shape, dtype and values, and
  the gradient of `sum(head * output)` for each differentiated input (heads from `head_for`);
- `losses.json`: the same for `loss_cases.py`;
- `training.json`: the schedules' learning rates and each optimizer's weights after each step,
  for `training_cases.py`;
- `autograd.json`: first and (weighted) second derivatives of `autograd_cases.py`;
- `contexts.json`: data-parallel training on two contexts (`context_cases.py`);
- `files.json`: what `Block.save` and `save_parameters` write for the models of
  `file_cases.py`.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import mxnet as mx
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from oracle import (  # noqa: E402
    array_cases,
    autograd_cases,
    context_cases,
    file_cases,
    loss_cases,
    training_cases,
)
from oracle.heads import head_for  # noqa: E402


def as_list(out: object) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def described(array: mx.nd.NDArray) -> dict:
    values = array.asnumpy()
    return {"shape": list(values.shape), "dtype": values.dtype.name,
            "values": values.reshape(-1).tolist()}


def record_array_case(f, inputs: list, differentiated: list, module=mx.nd) -> dict:
    arrays = [mx.nd.array(x, dtype=x.dtype) for x in inputs]
    for i in differentiated:
        arrays[i].attach_grad()
    # Cases without gradients run unrecorded: some of Gluon's losses write in place.
    with mx.autograd.record() if differentiated else mx.autograd.pause():
        outs = as_list(f(module, *arrays))
    entry: dict = {"outputs": [described(out) for out in outs]}
    if differentiated:
        heads = [mx.nd.array(head_for(out.shape)) for out in outs]
        floats = [(out, head) for out, head in zip(outs, heads) if out.dtype == np.float32]
        mx.autograd.backward([o for o, _ in floats], [h for _, h in floats])
        entry["grads"] = {str(i): arrays[i].grad.asnumpy().reshape(-1).tolist()
                          for i in differentiated}
    return entry


def raises(f, inputs: list) -> bool:
    try:
        f(mx.nd, *[mx.nd.array(x, dtype=x.dtype) for x in inputs]).wait_to_read()
    except mx.base.MXNetError:
        return True
    return False


def scheduler(spec: tuple) -> mx.lr_scheduler.LRScheduler:
    name, kwargs = spec
    return getattr(mx.lr_scheduler, name)(**kwargs)


def record_schedule(name: str, kwargs: dict) -> list:
    schedule = scheduler((name, kwargs))
    return [schedule(update) for update in range(training_cases.UPDATES)]


def record_steps(name: str, kwargs: dict, dtype: str) -> list:
    kwargs = dict(kwargs)
    if "lr_scheduler" in kwargs:
        kwargs["lr_scheduler"] = scheduler(kwargs["lr_scheduler"])
    optimizer = mx.optimizer.create(name, **kwargs)
    weight = mx.nd.array(training_cases.WEIGHT, dtype=dtype)
    state = optimizer.create_state_multi_precision(0, weight)
    steps = []
    for grad in training_cases.GRADIENTS:
        # A fresh gradient each time: some of Gluon's rules scale it in place.
        optimizer.update_multi_precision(0, weight, mx.nd.array(grad, dtype=dtype), state)
        steps.append(weight.asnumpy().astype(np.float64).reshape(-1).tolist())
    return steps


def record_files(folder: pathlib.Path) -> dict:
    files = {}
    for name, build in file_cases.BUILDERS.items():
        with mx.name.NameManager():
            net = build(mx.gluon.nn)
        net.save(str(folder / name))
        net.save_parameters(str(folder / "plain.params"))
        net.save_parameters(str(folder / "deduplicated.params"), deduplicate=True)
        try:
            net.save_params(str(folder / "legacy.params"))
            legacy = sorted(mx.nd.load(str(folder / "legacy.params")))
        except (ValueError, AttributeError):  # Gluon's handler itself fails on Python 3
            legacy = "refused"
        files[name] = {
            "model.json": json.loads((folder / f"{name}-model.json").read_text()),
            "save_parameters keys": sorted(mx.nd.load(str(folder / "plain.params"))),
            "deduplicated keys": sorted(mx.nd.load(str(folder / "deduplicated.params"))),
            "save_params keys": legacy,
            "collect_params": sorted(net.collect_params().keys()),
        }
    return files


def record_second_order(f, x_values: np.ndarray) -> dict:
    x = mx.nd.array(x_values)
    x.attach_grad()
    try:
        with mx.autograd.record():
            y = f(mx.nd, x)
            (dx,) = mx.autograd.grad(y, [x], head_grads=mx.nd.ones_like(y), create_graph=True,
                                     retain_graph=True)
            weighted = (dx * mx.nd.array(head_for(dx.shape))).sum()
        weighted.backward()
    except mx.base.MXNetError as error:
        return {"unsupported": str(error).splitlines()[-1][:200]}
    return {"dx": dx.asnumpy().reshape(-1).tolist(),
            "d2x": x.grad.asnumpy().reshape(-1).tolist()}


def main() -> None:
    training = {
        "schedules": {case: record_schedule(name, kwargs)
                      for case, name, kwargs in training_cases.SCHEDULES},
        "optimizers": {case: record_steps(name, kwargs, dtype)
                       for case, name, kwargs, dtype in training_cases.OPTIMIZERS},
    }
    (HERE / "training.json").write_text(json.dumps(training, indent=0, sort_keys=True) + "\n")
    arrays = {name: record_array_case(f, inputs, wrt)
              for name, f, inputs, wrt in array_cases.CASES}
    arrays["errors"] = {name: raises(f, inputs) for name, f, inputs in array_cases.ERROR_CASES}
    losses = {name: record_array_case(f, inputs, wrt, mx.gluon.loss)
              for name, f, inputs, wrt in loss_cases.CASES}
    (HERE / "losses.json").write_text(json.dumps(losses, indent=0, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as folder:
        files = record_files(pathlib.Path(folder))
    (HERE / "files.json").write_text(json.dumps(files, indent=0, sort_keys=True) + "\n")
    second = {name: record_second_order(f, x) for name, f, x in autograd_cases.CASES}
    (HERE / "autograd.json").write_text(json.dumps(second, indent=0, sort_keys=True) + "\n")
    contexts = {name: context_cases.train(mx, *run) for name, run in context_cases.RUNS.items()}
    (HERE / "contexts.json").write_text(json.dumps(contexts, indent=0, sort_keys=True) + "\n")
    (HERE / "arrays.json").write_text(json.dumps(arrays, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
