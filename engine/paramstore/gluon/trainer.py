"""`Trainer`: applies an optimizer to a set of Parameters, locally or through a KVStore."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paramstore import kvstore as kvs
from paramstore import optimizer as opt
from paramstore.gluon.parameter import Parameter

__all__ = ["Trainer"]

_STALE = (
    "Gradient of Parameter `{name}` on context {context} has not been updated by backward since "
    "last `step`. This could mean a bug in your model that made it only use a subset of the "
    "Parameters (Blocks) for this iteration. If you are intentionally only using a subset, call "
    "step with ignore_stale_grad=True to suppress this warning and skip updating of Parameters "
    "with stale gradient"
)


def _parameter_list(params: Any) -> list[Parameter]:
    """The Parameters to train: a dict's values in sorted key order, each object once."""
    if isinstance(params, Mapping) or (hasattr(params, "keys") and hasattr(params, "values")):
        params = [params[key] for key in sorted(params.keys())]
    if not isinstance(params, (list, tuple)):
        raise ValueError(
            f"First argument must be a list or dict of Parameters, got {type(params)}."
        )
    unique: list[Parameter] = []
    seen: set[int] = set()
    for param in params:
        if not isinstance(param, Parameter):
            raise ValueError(
                f"First argument must be a list or dict of Parameters, got list of {type(param)}."
            )
        # A tied parameter is one object, listed once however often it appears.
        if id(param) not in seen:
            seen.add(id(param))
            unique.append(param)
    return unique


class Trainer:
    """Applies an optimizer to Parameters after each backward: `trainer.step(batch_size)`.

    `params` is a ParameterDict or dict (its values in sorted key order) or a list of
    Parameters; each must be initialized or awaiting deferred initialization, else the
    Parameter's `RuntimeError`. `optimizer` is a registered name built with
    `optimizer_params` (`ValueError` for an unknown name, `TypeError` for a wrong keyword), or
    an `Optimizer` instance.

    `kvstore` is one of `kvstore.LOCAL_TYPES` ('device', 'local', ...) or None (updates run
    here; a parameter on several contexts is updated once from its copies' summed gradients
    and the result written to every copy), the name of a store registered with
    `KVStoreBase.register`, or a KVStore object (`broadcast` or `init`/`pull`, `pushpull`,
    `set_optimizer`). With a store, parameters are keyed by their **names**: the first step
    `broadcast`s each key from the parameter's data (so every worker starts alike). With
    `update_on_kvstore` (the default for a store capable of it) gradients are pushed, the store
    runs the optimizer and the new weights are pulled; with `update_on_kvstore=False` the store
    only sums gradients and the update runs here.
    `compression_params` (`{'type': '2bit', 'threshold': t}`) reach the KVStore object's
    `set_gradient_compression` on the first step; as in Gluon, a local Trainer ignores them.
    """

    def __init__(
        self,
        params: Any,
        optimizer: str | opt.Optimizer,
        optimizer_params: Mapping[str, Any] | None = None,
        kvstore: Any = "device",
        compression_params: Any = None,
        update_on_kvstore: bool | None = None,
    ) -> None:
        self._params = _parameter_list(params)
        self._index = {id(param): i for i, param in enumerate(self._params)}
        for param in self._params:
            param.list_ctx()  # raises for a parameter that was never initialized
        self._init_optimizer(optimizer, dict(optimizer_params or {}))
        self._scale = self._optimizer.rescale_grad
        if isinstance(kvstore, str) and kvstore.lower() in kvs.KVStoreBase.kv_registry:
            kvstore = kvs.create(kvstore)
        if isinstance(kvstore, str) or kvstore is None:
            if kvstore is not None and kvstore not in kvs.LOCAL_TYPES:
                raise ValueError(
                    f"kvstore must be 'device', 'local', None, a registered KVStore name or a "
                    f"KVStore object, got {kvstore!r}"
                )
            self._kvstore = None
            self._update_on_kvstore = None
            # Gluon's local store runs the updates of parameters kept on several contexts
            # unless told otherwise: then allreduce_grads/update are refused as for a store.
            self._local_store_updates = kvstore is not None and update_on_kvstore is not False
        else:
            self._kvstore = kvstore
            if update_on_kvstore is None:
                capable = getattr(kvstore, "is_capable", None)
                update_on_kvstore = capable(kvs.KVStoreBase.OPTIMIZER) if capable else True
            self._update_on_kvstore = update_on_kvstore
            self._local_store_updates = False
        self._compression_params = compression_params
        self._kv_initialized = False
        self._sent_optimizer: str | None = None

    def _init_optimizer(self, optimizer: str | opt.Optimizer, params: dict[str, Any]) -> None:
        param_dict = dict(enumerate(self._params))
        if isinstance(optimizer, opt.Optimizer):
            if params:
                raise AssertionError(
                    "optimizer_params must be None if optimizer is an instance of Optimizer "
                    "instead of str"
                )
            optimizer.param_dict = param_dict
            self._optimizer = optimizer
        else:
            self._optimizer = opt.create(optimizer, param_dict=param_dict, **params)

    # ---- the optimizer -----------------------------------------------------------------------
    @property
    def optimizer(self) -> opt.Optimizer:
        return self._optimizer

    @property
    def learning_rate(self) -> float:
        return self._optimizer.learning_rate

    def set_learning_rate(self, lr: float) -> None:
        """Use learning rate `lr` from the next update on (the KVStore's optimizer too)."""
        self._optimizer.set_learning_rate(lr)

    # ---- a step ------------------------------------------------------------------------------
    def step(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """One update of every parameter from its gradient divided by `batch_size`.

        Gradients are not zeroed. Raises `UserWarning` (as an exception) when a parameter's
        gradient was not written by a backward since the last step, unless
        `ignore_stale_grad`, which skips such parameters (they are not pushed to a KVStore
        either); `DeferredInitializationError` while a parameter awaits its first forward.
        """
        self._optimizer.rescale_grad = self._scale / batch_size
        chosen = self._fresh_parameters(ignore_stale_grad)
        self._init_kvstore()
        if self._kvstore is not None and self._update_on_kvstore:
            self._send_optimizer()
            self._per_keys("pushpull", [p.name for p in chosen],
                           [p.list_grad() for p in chosen], [p.list_data() for p in chosen])
            self._mark_used(chosen)
            return
        self._reduce(chosen)
        self._apply(chosen)

    def allreduce_grads(self) -> None:
        """Sum each parameter's gradient over the workers (through the KVStore, if any).

        Raises `AssertionError` when the KVStore runs the updates (use `step` then).
        """
        self._init_kvstore()
        self._refuse_when_updating_on_kvstore("allreduce_grads()")
        chosen = [p for p in self._params if p.grad_req != "null"]
        self._reduce(chosen)
        if self._kvstore is None:
            for param in chosen:
                grads = param.list_grad()
                if len(grads) > 1:
                    summed = np.sum([grad._data for grad in grads], axis=0)
                    for grad in grads:
                        grad._data[...] = summed

    def update(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """The update half of `step`, after `allreduce_grads`; same errors as `step`."""
        self._init_kvstore()
        self._refuse_when_updating_on_kvstore("update()")
        self._optimizer.rescale_grad = self._scale / batch_size
        self._apply(self._fresh_parameters(ignore_stale_grad), reduced=True)

    def _fresh_parameters(self, ignore_stale_grad: bool) -> list[Parameter]:
        """The parameters to update, checked before anything changes."""
        # Every deferred parameter raises before any stale gradient is reported.
        updated = [(param, param.list_data() if param._single is None else param._single)
                   for param in self._params if param.grad_req != "null"]
        chosen = []
        for param, data in updated:
            if isinstance(data, list):
                leaf = next((d._node for d in data if d._node is not None and d._node.fresh), None)
            else:
                leaf = data._node
            if leaf is not None and leaf.fresh:
                chosen.append(param)
            elif not ignore_stale_grad:
                raise UserWarning(_STALE.format(name=param.name, context=param.list_ctx()[0]))
        return chosen

    def _apply(self, chosen: list[Parameter], reduced: bool = False) -> None:
        """Update each parameter; with several copies, from their gradients' sum (or, when
        `reduced` by `allreduce_grads`, from the first copy's), written to every copy."""
        index = self._index
        update = self._optimizer.update
        for param in chosen:
            single = param._single
            if single is not None:
                update(index[id(param)], single._data, single._node.grad)
                single._node.fresh = False
                continue
            copies = param.list_data()
            first = copies[0]
            # Several contexts: one update from the gradients summed over the copies (Gluon's
            # local KVStore), written to every copy.
            grad = first._node.grad if reduced else np.sum(
                [data._node.grad for data in copies], axis=0, dtype=first.dtype)
            update(index[id(param)], first._data, grad)
            for data in copies:
                np.copyto(data._data, first._data)
                data._node.fresh = False

    @staticmethod
    def _mark_used(chosen: list[Parameter]) -> None:
        for param in chosen:
            for data in param.list_data():
                data._node.fresh = False

    # ---- the KVStore -------------------------------------------------------------------------
    def _init_kvstore(self) -> None:
        if self._kvstore is None or self._kv_initialized:
            return
        if self._compression_params is not None:
            self._kvstore.set_gradient_compression(self._compression_params)
        names = [param.name for param in self._params]
        copies = [param.list_data() for param in self._params]
        firsts = [param_copies[0] for param_copies in copies]
        if hasattr(self._kvstore, "broadcast"):
            self._per_keys("broadcast", names, firsts, copies)
        else:
            self._kvstore.init(names, firsts)
            self._kvstore.pull(names, out=copies)
        self._kv_initialized = True

    def _send_optimizer(self) -> None:
        # The store holds a copy of the optimizer: send it again whenever it changed
        # (a new learning rate, or a batch size that changes the gradient's rescaling).
        self._optimizer.set_lr_mult({p.name: p.lr_mult for p in self._params if p.lr_mult != 1})
        self._optimizer.set_wd_mult({p.name: p.wd_mult for p in self._params if p.wd_mult != 1})
        text = self._optimizer.dumps()
        if text != self._sent_optimizer:
            self._kvstore.set_optimizer(self._optimizer)
            self._sent_optimizer = text

    def _reduce(self, chosen: Sequence[Parameter]) -> None:
        if self._kvstore is None:
            return
        grads = [param.list_grad() for param in chosen]
        self._per_keys("pushpull", [param.name for param in chosen], grads, grads)

    def _per_keys(self, method: str, names: list[str], values: list[Any], out: list[Any]) -> None:
        """`method` (pushpull, broadcast) for every key: in one call where the store takes lists
        of keys (one round trip to a remote store), else one call per key, as Gluon makes them
        to a store of one's own."""
        if not names:
            return
        call = getattr(self._kvstore, method)
        if getattr(self._kvstore, "takes_key_lists", False):
            call(names, values, out=out)
            return
        for name, value, target in zip(names, values, out):
            call(name, value, out=target)

    def _refuse_when_updating_on_kvstore(self, what: str) -> None:
        several_contexts = self._kvstore is None and self._local_store_updates and any(
            len(param.list_ctx()) > 1 for param in self._params)
        if (self._kvstore is not None and self._update_on_kvstore) or several_contexts:
            raise AssertionError(
                f"{what} when parameters are updated on kvstore is not supported. Try setting "
                "`update_on_kvstore` to False when creating trainer."
            )

    # ---- optimizer state ---------------------------------------------------------------------
    def save_states(self, fname: str | os.PathLike[str]) -> None:
        """Write the optimizer and its state (momentum, moments, counts) to a safetensors file."""
        self._init_kvstore()
        if self._kvstore is not None and self._update_on_kvstore:
            self._send_optimizer()
            self._kvstore.save_optimizer_states(os.fspath(fname), dump_optimizer=True)
        else:
            opt.save_states(fname, self._optimizer)

    def load_states(self, fname: str | os.PathLike[str]) -> None:
        """Resume from `save_states`: the saved optimizer and its state replace the current ones.

        The parameters' `lr_mult`/`wd_mult` keep applying (they are read from the Parameters).
        """
        self._init_kvstore()
        loaded = opt.load_states(fname)
        if self._kvstore is not None and self._update_on_kvstore:
            self._kvstore.load_optimizer_states(os.fspath(fname))
            self._sent_optimizer = None
        loaded.param_dict = dict(enumerate(self._params))
        self._optimizer = loaded
