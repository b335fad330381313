"""A step whose answer was lost is sent again and not applied twice; a worker that joins again
keeps its rank when it is free.

The server applies each step for real; `LostAnswers` then throws its answer away in the
worker, as a connection cut on the way back would, so that the worker retries the step."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from training_runs import TRANSPORTS, takes_the_data_channel, train_in_one_process, train_tied_mlp

from paramstore import autograd, gluon, nd
from paramstore import random as ps_random
from paramstore.client import RemoteKVStore
from paramstore.client.errors import Unavailable
from paramstore.client.train_demo import global_batch, shard, tied_mlp
from paramstore.name import NameManager
from paramstore.proto.v1 import paramstore_pb2 as pb


class LostAnswers:
    """Loses the answers of the chosen steps of a client's worker (counted from 1): the server
    applied them, the worker hears `Unavailable`, whichever way its steps go (shared memory,
    the data channel or gRPC)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, lose: dict[Any, set[int]]) -> None:
        self.lost = 0
        exchanges: Counter[int] = Counter()

        def losing(exchange: Callable[..., Any]) -> Callable[..., Any]:
            def lose_some(kv: RemoteKVStore, *args: Any, **kwargs: Any) -> Any:
                result = exchange(kv, *args, **kwargs)
                client = kv._client
                exchanges[id(client)] += 1
                if exchanges[id(client)] in lose.get(client, ()):
                    self.lost += 1
                    kv._steps.close()
                    kv._data.close()
                    raise Unavailable("the step's answer was lost on its way back")
                return result

            return lose_some

        for method in ("_push_pull_socket", "_push_pull_shared"):
            monkeypatch.setattr(RemoteKVStore, method, losing(getattr(RemoteKVStore, method)))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_worker_whose_answers_are_lost_trains_as_without_the_fault(
    make_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, transport: str,
) -> None:
    server = make_server()
    with server.connect() as client, server.connect() as faulty:
        with client.kvstore("clean", mode="sync", num_workers=1, timeout=10) as kv:
            expected = train_tied_mlp(kv, steps=5)
        lost = LostAnswers(monkeypatch, {faulty: {2, 4}})
        with faulty.kvstore("faulty", mode="sync", num_workers=1, timeout=10,
                            **TRANSPORTS[transport]) as kv:
            got = train_tied_mlp(kv, steps=5)
            assert kv.data_channel == takes_the_data_channel(transport)
    assert lost.lost == 2
    for got_one, want in zip(got, expected):
        np.testing.assert_array_equal(got_one, want)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_sync_workers_losing_answers_end_where_one_process_ends(
    make_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, transport: str,
) -> None:
    server = make_server()
    steps, batch_size, params = 6, 16, {"learning_rate": 0.5, "momentum": 0.9}
    clients = [server.connect(), server.connect()]
    lost = LostAnswers(monkeypatch, {clients[0]: {2}, clients[1]: {3, 5}})
    kvs = [client.kvstore("mlp", mode="sync", num_workers=2, timeout=20,
                          **TRANSPORTS[transport]) for client in clients]
    nets = []
    for _ in kvs:  # alike, names and weights; each thread records on its own tape
        ps_random.seed(0)
        with NameManager():
            net = tied_mlp()
        net.initialize()
        net(nd.array(global_batch(0, 1)[0]))  # the deferred draws, here rather than in a thread
        nets.append(net)
    errors: list[BaseException] = []

    def work(kv: Any, net: Any) -> None:
        try:
            trainer = gluon.Trainer(net.collect_params(), "sgd", params, kvstore=kv)
            loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
            for step in range(steps):
                features, labels = global_batch(step, batch_size)
                x = nd.array(shard(features, kv.rank, 2))
                y = nd.array(shard(labels, kv.rank, 2))
                with autograd.record():
                    loss = loss_fn(net(x), y)
                loss.backward()
                trainer.step(batch_size)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(kvs, nets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for kv, client in zip(kvs, clients):
        kv.close()
        client.close()
    assert errors == []
    assert lost.lost == 3
    expected = train_in_one_process(steps, batch_size, "sgd", params)
    for net in nets:
        for param, want in zip(net.collect_params().values(), expected):
            np.testing.assert_allclose(param.data().asnumpy(), want, rtol=1e-5, atol=1e-6)


def _join(client: Any, rank: int | None) -> int:
    return int(client.call("JoinTraining", pb.JoinTrainingRequest(
        store="mlp", mode="sync", num_workers=3, timeout_seconds=5, rank=rank)).rank)


def test_a_worker_joining_again_keeps_its_rank_when_it_is_free(
    make_server: Callable[..., Any],
) -> None:
    with make_server().connect() as client:
        client.create_store("mlp")
        assert _join(client, 2) == 2
        assert _join(client, 2) == 0  # held: the lowest free rank instead
        assert _join(client, None) == 1
