"""A worker's steps on one long-lived PushPullSteps call: steps follow one another on it, a
call left idle is replaced before the server's idle timeout cuts it, a step cut short or
followed by stray messages is refused, and a step sent again under its number is not applied
twice."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from paramstore import nd
from paramstore.client.errors import Aborted, InvalidArgument
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.admission import CallLimits


def _step(rank: int, gradient: list[float], name: str = "w", count: int = 1,
          number: int = 0) -> list[Any]:
    begin = pb.PushBegin(store="mlp", rank=rank, parameter_count=count, step=number)
    data = np.asarray(gradient, dtype="<f4")
    return [pb.PushRequest(begin=begin),
            pb.PushRequest(parameter=pb.ParameterSpec(
                name=name, shape=[data.size], dtype="float32", dtype_label="float32",
                kind="Parameter", has_data=True)),
            pb.PushRequest(chunk=data.tobytes())]


class _Call:
    """A raw PushPullSteps call whose requests are sent as the test puts them."""

    def __init__(self, client: Any) -> None:
        self.outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.replies = iter(client.stream("PushPullSteps", self._requests()))

    def _requests(self) -> Iterator[Any]:
        while (request := self.outbox.get()) is not None:
            yield request

    def send(self, requests: list[Any]) -> None:
        for request in requests:
            self.outbox.put(request)

    def value(self) -> list[float]:
        """One step's answer: PullBegin, the key's spec and its one chunk."""
        begin, spec, chunk = (next(self.replies) for _ in range(3))
        assert begin.WhichOneof("item") == "begin"
        assert spec.parameter.name == "w"
        return np.frombuffer(bytes(chunk.chunk), dtype="<f4").tolist()

    def close(self) -> None:
        self.outbox.put(None)


@pytest.fixture
def joined(make_server: Callable[..., Any]) -> Iterator[Any]:
    """A client whose worker (rank 0 of 1) holds key "w" = [1, 1, 1], no optimizer."""
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1, timeout=5)
        kv.init("w", nd.ones(3))
        yield client
        kv.close()


def test_steps_follow_one_another_on_one_call(joined: Any) -> None:
    call = _Call(joined)
    for step in range(3):  # without an optimizer, the summed gradient becomes the value
        call.send(_step(0, [step, step + 1, step + 2]))
        assert call.value() == [step, step + 1, step + 2]
    call.close()
    assert next(call.replies, None) is None  # the server ends the call with the requests


def test_a_step_cut_short_is_refused_and_changes_nothing(joined: Any) -> None:
    call = _Call(joined)
    call.send(_step(0, [5, 5, 5], count=2))  # announces a second key that never comes
    call.close()
    with pytest.raises(InvalidArgument, match="ended after 1 of the 2 parameters"):
        list(call.replies)
    assert joined.store("mlp").collect_params()["w"].data().asnumpy().tolist() == [1, 1, 1]


def test_a_message_after_a_steps_last_byte_must_begin_the_next_step(joined: Any) -> None:
    call = _Call(joined)
    call.send(_step(0, [2, 2, 2]) + [pb.PushRequest(chunk=b"\0" * 12)])
    assert call.value() == [2, 2, 2]
    call.close()
    with pytest.raises(InvalidArgument, match="must start with PushBegin"):
        list(call.replies)


def test_a_step_sent_again_under_its_number_answers_what_it_produced(joined: Any) -> None:
    call = _Call(joined)
    call.send(_step(0, [2.0] * 3, number=1))
    assert call.value() == [2.0] * 3
    # Without an optimizer a step's summed gradient becomes the value: a repeat applied again
    # would answer its own gradient.
    call.send(_step(0, [5.0] * 3, number=1))
    assert call.value() == [2.0] * 3
    call.send(_step(0, [3.0] * 3, number=2))
    assert call.value() == [3.0] * 3
    call.close()


def test_a_worker_replaces_its_call_before_the_idle_timeout_cuts_it(
    make_server: Callable[..., Any],
) -> None:
    with make_server(calls=CallLimits(idle_timeout=1.0)).connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1, timeout=5)
        kv.init("w", nd.ones(3))
        out = nd.zeros(3)
        for gradient in (2.0, 3.0):
            kv.pushpull("w", nd.ones(3) * gradient, out=out)
            assert out.asnumpy().tolist() == [gradient] * 3
            time.sleep(1.5)  # idle past the server's timeout between steps
        kv.close()


def test_workers_on_long_lived_calls_train_in_step_from_threads(
    make_server: Callable[..., Any],
) -> None:
    server = make_server()
    results: dict[int, list[float]] = {}

    def worker() -> None:
        with server.connect() as client:
            kv = client.kvstore("mlp", mode="sync", num_workers=2, timeout=10)
            kv.init("w", nd.zeros(3))
            out = nd.zeros(3)
            for _ in range(5):
                kv.pushpull("w", nd.ones(3) * (kv.rank + 1), out=out)
            results[kv.rank] = out.asnumpy().tolist()
            kv.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Without an optimizer each step's value is the sum of the two workers' gradients.
    assert results == {0: [3.0] * 3, 1: [3.0] * 3}


def test_a_step_aborted_for_a_missing_worker_leaves_none_of_its_keys_behind(
    make_server: Callable[..., Any],
) -> None:
    server = make_server()
    with server.connect() as first_client, server.connect() as second_client:
        first = first_client.kvstore("mlp", mode="sync", num_workers=2, timeout=0.5)
        first.init(["a", "b"], [nd.zeros(3), nd.zeros(3)])
        with pytest.raises(Aborted, match=r"rank \[1\]"):  # rank 1 has not joined yet
            first.push(["a", "b"], [nd.ones(3) * 100, nd.ones(3) * 100])
        second = second_client.kvstore("mlp", mode="sync", num_workers=2, timeout=10)
        outs = {kv.rank: [nd.zeros(3), nd.zeros(3)] for kv in (first, second)}

        def step(kv: Any) -> None:
            gradient = nd.ones(3) * (kv.rank + 1)
            kv.pushpull(["a", "b"], [gradient, gradient], out=outs[kv.rank])

        helper = threading.Thread(target=step, args=(second,))
        helper.start()
        step(first)
        helper.join(10)
        # Without an optimizer the value is the sum of this step's gradients, the aborted
        # step's gradient of "b" included in none.
        assert {rank: [out.asnumpy().tolist() for out in pair] for rank, pair in outs.items()} \
            == {0: [[3.0] * 3] * 2, 1: [[3.0] * 3] * 2}
        first.close()
        second.close()


def test_a_step_pushing_both_names_of_a_tie_updates_the_tensor_once_for_each(
    make_server: Callable[..., Any],
) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1, timeout=5)
        kv.init("w", nd.ones(3))
        client.store("mlp").tie("alias", "w")
        outs = [nd.zeros(3), nd.zeros(3)]
        kv.pushpull(["w", "alias"], [nd.ones(3) * 2, nd.ones(3) * 5], out=outs)
        # Without an optimizer each round's gradient becomes the value: "w" answers its
        # round's, "alias" the round after it, which the store keeps.
        assert [out.asnumpy().tolist() for out in outs] == [[2.0] * 3, [5.0] * 3]
        assert client.store("mlp").collect_params()["w"].data().asnumpy().tolist() == [5.0] * 3
        kv.close()
