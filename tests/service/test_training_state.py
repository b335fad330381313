"""A training store's optimizer state is part of the store: every snapshot commits it with the
weights, a restore brings both back, and `Trainer.save_states`/`load_states` work through a
remote KVStore."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_training import train_in_one_process

from paramstore import autograd, gluon, nd
from paramstore import optimizer as opt
from paramstore import random as ps_random
from paramstore.client.errors import FailedPrecondition, InvalidArgument
from paramstore.client.train_demo import global_batch, shard, tied_mlp
from paramstore.name import NameManager

BATCH = 16
ADAM = {"learning_rate": 0.01}


class Worker:
    """One worker of a store's training: the chapter's tied MLP and a Trainer on a kvstore.
    Each of `num_workers` sync workers trains on its rank's share of every batch."""

    def __init__(self, client: Any, store: str = "m", num_workers: int = 1,
                 **options: Any) -> None:
        ps_random.seed(0)
        with NameManager():  # every worker's parameters get the same names (the store's keys)
            self.net = tied_mlp()
        self.net.initialize()
        self.net(nd.array(global_batch(0, 1)[0]))  # finishes the deferred initialization
        self.kv = client.kvstore(store, mode="sync", num_workers=num_workers, **options)
        self.trainer = gluon.Trainer(self.net.collect_params(), "adam", ADAM, kvstore=self.kv)
        params = list({id(param): param for param in self.net.collect_params().values()}.values())
        names, arrays = [param.name for param in params], [param.data() for param in params]
        self.kv.init(names, arrays)
        self.kv.pull(names, out=arrays)  # a joining worker starts from the server's weights
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def train(self, first_step: int, steps: int) -> list[np.ndarray]:
        for step in range(first_step, first_step + steps):
            features, labels = (nd.array(shard(array, self.kv.rank, self.kv.num_workers))
                                for array in global_batch(step, BATCH))
            with autograd.record():
                loss = self.loss(self.net(features), labels)
            loss.backward()
            self.trainer.step(BATCH)
        return [param.data().asnumpy() for param in self.net.collect_params().values()]


def assert_weights_equal(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for got_one, want_one in zip(got, want, strict=True):
        np.testing.assert_allclose(got_one, want_one, rtol=1e-5, atol=1e-6)


def test_a_manual_snapshot_resumes_training_exactly_after_a_restart(
        make_server: Callable[..., Any]) -> None:
    server = make_server()
    with server.connect() as client:
        Worker(client).train(0, 4)
        client.store("m").snapshot()  # no --snapshot-every: the optimizer state comes along
    server.server.stop(None).wait()
    with make_server(data_dir=server.data_dir).connect() as client:
        resumed = Worker(client).train(4, 4)
    assert_weights_equal(resumed, train_in_one_process(8, BATCH, "adam", ADAM))


def test_a_restore_brings_the_optimizer_state_back_with_the_weights(
        make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        first = Worker(client)
        first.train(0, 4)
        snapshot = client.store("m").snapshot()
        first.train(4, 4)  # weights and Adam's moments move on
        client.store("m").restore(snapshot.id)
        first.kv.close()
        retrained = Worker(client).train(4, 4)  # a fresh worker takes the server's weights
    assert_weights_equal(retrained, train_in_one_process(8, BATCH, "adam", ADAM))


def test_trainer_states_round_trip_through_a_remote_kvstore(
        make_server: Callable[..., Any], tmp_path: Path) -> None:
    with make_server().connect() as client:
        worker = Worker(client)
        worker.train(0, 2)
        worker.trainer.save_states(tmp_path / "states.safetensors")
        saved = opt.load_states(tmp_path / "states.safetensors").get_states()
        assert saved["num_update"] == 2 and any(name.endswith("/mean") for name in saved)
        worker.train(2, 2)
        worker.trainer.load_states(tmp_path / "states.safetensors")
        worker.kv.save_optimizer_states(str(tmp_path / "back.safetensors"))
    back = opt.load_states(tmp_path / "back.safetensors").get_states()
    assert back.keys() == saved.keys()
    for name, array in saved.items():
        np.testing.assert_array_equal(back[name], array)


def test_optimizer_states_of_a_store_without_an_optimizer_are_refused(
        make_server: Callable[..., Any], tmp_path: Path) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("m", mode="sync", num_workers=1)
        with pytest.raises(FailedPrecondition, match="no optimizer"):
            kv.save_optimizer_states(str(tmp_path / "none.safetensors"))
        assert not (tmp_path / "none.safetensors").exists()
        (tmp_path / "junk").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
        with pytest.raises(InvalidArgument, match="not an optimizer states file"):
            kv.load_optimizer_states(str(tmp_path / "junk"))


def _two_key_steps(client: Any, steps: int) -> None:
    """`steps` sync steps of one worker on keys a and b (SGD, rate 1: each takes 1 off both)."""
    with client.kvstore("ab", mode="sync", num_workers=1) as kv:
        kv.init(["a", "b"], [nd.zeros(2), nd.zeros(2)])
        kv.set_optimizer(opt.SGD(learning_rate=1.0))
        out = [nd.zeros(2), nd.zeros(2)]
        for _ in range(steps):
            kv.pushpull(["a", "b"], [nd.ones(2), nd.ones(2)], out=out)


def test_periodic_snapshots_hold_whole_steps_and_count_on_after_a_restart(
        make_server: Callable[..., Any]) -> None:
    server = make_server(snapshot_every=1)
    with server.connect() as client:
        _two_key_steps(client, 2)
    server.server.stop(None).wait()  # the periodic snapshots being written are finished
    with make_server(data_dir=server.data_dir, snapshot_every=1).connect() as client:
        _two_key_steps(client, 1)
        store = client.store("ab")
        deadline = time.monotonic() + 10
        while len(store.snapshots()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # written off the training path
        taken = store.snapshots()
        assert [info.step for info in taken] == [1, 2, 3]
        for info in taken:
            store.restore(info.id)
            params = store.collect_params()
            for key in ("a", "b"):
                assert params[key].data().asnumpy().tolist() == [-info.step] * 2, (info, key)
