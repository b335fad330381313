"""Data-parallel training on two contexts, run alike on MXNet and paramstore.

`train(mx_or_paramstore, steps)` builds a Dense layer on cpu(0) and cpu(1), splits each batch
over them, and returns what a user would look at: contexts, per-copy gradients and weights.
"""

import numpy as np

_rng = np.random.default_rng(5)
WEIGHT = _rng.uniform(-1, 1, (2, 3)).astype(np.float32)
BATCHES = [(_rng.uniform(-1, 1, (4, 3)).astype(np.float32),
            _rng.uniform(-1, 1, (4, 2)).astype(np.float32)) for _ in range(3)]


def train(engine, optimizer: str, options: dict, allreduce: bool = False,
          trainer_options: dict | None = None) -> dict:
    nd, gluon, autograd = engine.nd, engine.gluon, engine.autograd
    contexts = [engine.cpu(0), engine.cpu(1)]
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize(ctx=contexts)
    net.weight.set_data(nd.array(WEIGHT))
    trainer = gluon.Trainer(net.collect_params(), optimizer, dict(options),
                            **(trainer_options or {}))
    loss_fn = gluon.loss.L2Loss()
    seen: dict = {
        "list_ctx": [str(c) for c in net.weight.list_ctx()],
        "data contexts": [str(d.context) for d in net.weight.list_data()],
        "grad contexts": [str(g.context) for g in net.weight.list_grad()],
        "grads": [], "weights": [],
    }
    for x, y in BATCHES:
        xs = gluon.utils.split_and_load(nd.array(x), contexts)
        ys = gluon.utils.split_and_load(nd.array(y), contexts)
        with autograd.record():
            losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
        for loss in losses:
            loss.backward()
        seen["output contexts"] = [str(loss.context) for loss in losses]
        seen["grads"].append([g.asnumpy().reshape(-1).tolist() for g in net.weight.list_grad()])
        if allreduce:
            trainer.allreduce_grads()
            trainer.update(4)
        else:
            trainer.step(4)
        seen["weights"].append([d.asnumpy().reshape(-1).tolist() for d in net.weight.list_data()])
    return seen


RUNS = {
    "sgd": ("sgd", {"learning_rate": 0.1}, False),
    "adam allreduce": ("adam", {"learning_rate": 0.05}, True, {"update_on_kvstore": False}),
    "sgd momentum wd": ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}, False),
}
