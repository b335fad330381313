"""The same-host data path of training: workers on the server's host move their data through
shared memory, end where the socket path ends, and bad segments are refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, cast

import grpc
import numpy as np
import pytest
from hostile_segments import MEMFD, hostile_segment, memfd, named
from training_runs import TRANSPORTS, takes_the_data_channel, train_tied_mlp

from paramstore import autograd, gluon, nd
from paramstore import random as ps_random
from paramstore.client.errors import InvalidArgument, from_status
from paramstore.client.train_demo import global_batch, tied_mlp
from paramstore.proto import data_frames as frames
from paramstore.proto import shared_memory as segments
from paramstore.proto.v1 import paramstore_pb2 as pb

__all__ = ["hostile_segment"]  # a fixture of this module
pytest_plugins = ("server_fixtures",)  # `served`: a server process, which a SIGBUS would kill

@pytest.mark.parametrize("compression", [None, {"type": "2bit", "threshold": 0.05},
                                         {"type": "fp16"}])
@pytest.mark.parametrize("other", ["data-channel", "shared-memory-grpc"])
def test_a_worker_on_the_servers_host_ends_where_the_other_paths_end(
    make_server: Callable[..., Any], compression: dict[str, Any] | None, other: str,
) -> None:
    with make_server().connect() as client:
        shared = client.kvstore("shared", mode="sync", num_workers=1)
        another = client.kvstore("other", mode="sync", num_workers=1, **TRANSPORTS[other])
        through_memory = train_tied_mlp(shared, compression)
        through_other = train_tied_mlp(another, compression)
        assert (shared.shared_memory, shared.data_channel) == (True, True)
        assert (another.shared_memory, another.data_channel) == \
            (TRANSPORTS[other].get("shared_memory", True), takes_the_data_channel(other))
        shared.close()
    for got, want in zip(through_memory, through_other, strict=True):
        np.testing.assert_array_equal(got, want)
    assert shared.bytes_sent == another.bytes_sent


def test_without_a_data_channel_a_worker_on_the_servers_host_signals_on_grpc(
    make_server: Callable[..., Any],
) -> None:
    with make_server().connect() as client:
        expected = train_tied_mlp(client.kvstore("with", mode="sync", num_workers=1))
    with make_server(data_port=None).connect() as client:
        kv = client.kvstore("without", mode="sync", num_workers=1)
        got = train_tied_mlp(kv)
        assert (kv.shared_memory, kv.data_channel) == (True, False)
    for one, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(one, want)


def test_a_probe_the_server_cannot_open_means_the_socket(
        client: Any, hostile_segment: tuple[str, str]) -> None:
    client.create_store("mlp")
    reply = client.call("JoinTraining", pb.JoinTrainingRequest(
        store="mlp", mode="sync", num_workers=2, shared_memory_probe=hostile_segment[0],
    ))
    assert reply.shared_memory_probe == b""


def test_the_segment_is_released_on_close(client: Any) -> None:
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    kv.init("w", nd.ones(3))
    kv.push("w", nd.ones(3))
    name = kv._segment.name
    kv.close()
    assert not segments.exists(name)


def _requests(segment_name: str, size: int = 3, chunk: bytes | None = None) -> list[Any]:
    begin = pb.PushBegin(store="mlp", rank=0, parameter_count=1, shared_memory=segment_name)
    requests = [pb.PushRequest(begin=begin), pb.PushRequest(parameter=pb.ParameterSpec(
        name="w", shape=[size], dtype="float32", dtype_label="float32", kind="Parameter",
        has_data=True))]
    return requests + ([pb.PushRequest(chunk=chunk)] if chunk is not None else [])


@pytest.fixture
def joined(client: Any) -> Any:
    kv = client.kvstore("mlp", mode="sync", num_workers=1, timeout=5)
    kv.init("w", nd.ones(3))
    return client


Steps = Callable[[Any, list[Any]], None]
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _steps_on_grpc(client: Any, requests: list[Any]) -> None:
    list(client.stream("PushPullSteps", iter(requests)))


def _steps_on_the_data_channel(client: Any, requests: list[Any]) -> None:
    """The steps of `requests` (PushPull's messages) on one data channel connection of rank 0:
    each PushBegin and the specs after it as a DataStep. Raises the first refusal's error."""
    steps: list[pb.DataStep] = []
    for request in requests:
        if request.WhichOneof("item") == "begin":
            steps.append(pb.DataStep(begin=request.begin))
        else:
            steps[-1].parameters.append(request.parameter)
    reply = client.call("OpenDataChannel", pb.OpenDataChannelRequest(store="mlp", rank=0))
    host = client.address.rsplit(":", 1)[0]
    with socket.create_connection((host, reply.port), timeout=10) as stream:
        stream.sendall(reply.ticket)
        assert frames.read_message(stream, pb.DataStatus).code == 0
        for step in steps:
            frames.send_message(stream, step)
            status = frames.read_message(stream, pb.DataStatus)
            if status.code:
                raise from_status(_CODES[status.code], status.message, status.error_kind)


@pytest.fixture(params=[_steps_on_grpc, _steps_on_the_data_channel],
                ids=["grpc", "data-channel"])
def steps(request: pytest.FixtureRequest) -> Steps:
    """A way to send a worker's steps whose data is in shared memory (the signal)."""
    return cast(Steps, request.param)


def _stored(client: Any) -> list[float]:
    return client.store("mlp").collect_params()["w"].data().asnumpy().tolist()


@pytest.mark.parametrize("name", [
    "../../etc/passwd", MEMFD, f"/dev/shm/{MEMFD}", f"{MEMFD}@0/3", f"{MEMFD}@1/03",
    f"{MEMFD}@1/3/../4", f"{MEMFD}@1/-1", f"{MEMFD}@1/3\n", f"{MEMFD.upper()}@1/3",
    f"{MEMFD}@self/3", f"{MEMFD}@1/3@1/3",
])
def test_a_name_that_is_not_a_segment_is_refused(joined: Any, steps: Steps, name: str) -> None:
    with pytest.raises(InvalidArgument, match="not a shared-memory segment name"):
        steps(joined, _requests(name))
    assert _stored(joined) == [1.0, 1.0, 1.0]


def test_anything_but_a_sealed_memfd_of_its_name_is_refused_and_changes_nothing(
        joined: Any, steps: Steps, hostile_segment: tuple[str, str]) -> None:
    name, refusal = hostile_segment
    with pytest.raises(InvalidArgument, match=refusal):
        steps(joined, _requests(name))
    assert _stored(joined) == [1.0, 1.0, 1.0]


def test_a_segment_too_small_for_the_parameters_is_refused(joined: Any, steps: Steps) -> None:
    segment = segments.create(8)
    try:
        size = segment.size  # the system may round it up to a page
        with pytest.raises(InvalidArgument, match="too few for parameter 'w'"):
            steps(joined, _requests(segment.name, size=size))
        assert _stored(joined) == [1.0, 1.0, 1.0]
    finally:
        segment.close()


def test_a_worker_cannot_shrink_its_segment_under_the_servers_mapping(
        served: Any, remote: Any) -> None:
    size = 1 << 16
    with remote.kvstore("mlp", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.zeros(size))
        out = nd.zeros(size)
        kv.pushpull("w", nd.ones(size), out=out)  # the server maps the segment
        descriptor = int(kv._segment.name.rpartition("/")[2])
        with pytest.raises(PermissionError):
            os.ftruncate(descriptor, 0)
        kv.pushpull("w", nd.ones(size) * 2, out=out)  # and touches every page again
        assert kv.shared_memory and out.asnumpy()[[0, -1]].tolist() == [2.0, 2.0]
    assert served.process.poll() is None


def test_an_unsealed_segment_is_refused_before_the_server_maps_it(
        served: Any, remote: Any) -> None:
    with remote.kvstore("mlp", mode="sync", num_workers=1) as kv:
        kv.init("w", nd.zeros(3))
    with ExitStack() as stack:
        descriptor = memfd(stack, 0)  # of the right name, but free to shrink
        os.pwrite(descriptor, np.ones(3, "<f4").tobytes(), 0)
        for _ in range(2):  # refused whole, then shrunk: as it would be under a mapping
            with pytest.raises(InvalidArgument, match="not sealed"):
                list(remote.stream("PushPullSteps", iter(_requests(named(descriptor)))))
            os.ftruncate(descriptor, 0)
        with open(f"/proc/{served.process.pid}/maps") as maps:
            assert MEMFD not in maps.read()
    with remote.kvstore("mlp", mode="sync", num_workers=1) as kv:
        out = nd.zeros(3)
        kv.pushpull("w", nd.ones(3), out=out)
        assert kv.shared_memory and out.asnumpy().tolist() == [1.0, 1.0, 1.0]
    assert served.process.poll() is None


def test_chunks_after_a_parameter_in_shared_memory_are_refused(joined: Any) -> None:
    segment = segments.create(64)
    try:
        with pytest.raises(InvalidArgument, match="no chunk may follow"):
            list(joined.stream("PushPull", iter(_requests(segment.name, chunk=b"\0" * 12))))
        assert _stored(joined) == [1.0, 1.0, 1.0]
    finally:
        segment.close()


def test_shared_memory_on_a_plain_push_is_refused(joined: Any) -> None:
    requests = _requests(named(3))
    with pytest.raises(InvalidArgument, match="PushPull streams only"):
        joined.call("Push", iter(requests))


def test_a_worker_that_exits_without_close_frees_its_segment(server: Any) -> None:
    worker = f"""
from paramstore import nd
from paramstore.client import connect
kv = connect({server.address!r}).kvstore("mlp", mode="sync", num_workers=1)
kv.init("w", nd.ones(3))
kv.pushpull("w", nd.ones(3), out=nd.zeros(3))
print(kv._segment.name)
"""
    done = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert not segments.exists(done.stdout.strip())


def _local_and_remote_nets(kv: Any, grad_req: str = "write") -> list[tuple[Any, Any]]:
    """The tied MLP twice from one seed: trained here, and through `kv`."""
    pairs = []
    for store in (None, kv):
        ps_random.seed(0)
        net = tied_mlp()
        net.initialize()
        net(nd.array(global_batch(0, 8)[0]))  # the deferred initialization, drawn now
        net.collect_params().setattr("grad_req", grad_req)
        trainer = gluon.Trainer(net.collect_params(), "sgd",
                                {"learning_rate": 0.5, "momentum": 0.9},
                                **({} if store is None else {"kvstore": store}))
        pairs.append((net, trainer))
    return pairs


def _backward(net: Any, step: int, part: int = 0) -> None:
    features, labels = global_batch(step, 8, seed=part)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(nd.array(features)), nd.array(labels))
    loss.backward()


def _arrays(net: Any, what: str) -> list[np.ndarray]:
    return [getattr(param, what)().asnumpy() for param in net.collect_params().values()]


def _assert_same_weights_and_gradients(remote: Any, local: Any) -> None:
    for what in ("data", "grad"):
        for got, want in zip(_arrays(remote, what), _arrays(local, what), strict=True):
            np.testing.assert_array_equal(got, want)


def test_gradients_stay_the_workers_after_a_step_through_shared_memory(client: Any) -> None:
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    (local, here), (remote, there) = _local_and_remote_nets(kv)
    for step in range(4):
        for net, trainer in ((local, here), (remote, there)):
            _backward(net, step)
            trainer.step(8)
        _assert_same_weights_and_gradients(remote, local)
    kv.close()


def test_grad_req_add_accumulates_through_shared_memory_as_in_one_process(client: Any) -> None:
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    (local, here), (remote, there) = _local_and_remote_nets(kv, grad_req="add")
    for step in range(4):
        for net, trainer in ((local, here), (remote, there)):
            _backward(net, step, part=0)
            _backward(net, step, part=1)  # a second batch adds to the first one's gradients
            trainer.step(16)
            if step % 2:  # gradients also add up across steps until zeroed
                net.collect_params().zero_grad()
    _assert_same_weights_and_gradients(remote, local)
    kv.close()


def test_closing_gives_the_parameters_memory_of_their_own(client: Any) -> None:
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    (_, _), (net, trainer) = _local_and_remote_nets(kv)
    for step in range(2):
        _backward(net, step)
        trainer.step(8)
    before = _arrays(net, "data")
    name = kv._segment.name
    kv.close()
    assert not segments.exists(name)
    for param, want in zip(net.collect_params().values(), before):
        np.testing.assert_array_equal(param.data().asnumpy(), want)
        param.set_data(param.data() + 1)  # still the parameter's own, writable memory
        np.testing.assert_array_equal(param.data().asnumpy(), want + 1)
    _backward(net, 2)  # and backward still writes the gradients the parameters show
    assert all(np.any(grad != 0) for grad in _arrays(net, "grad"))


def test_with_compressed_gradients_the_weights_still_live_in_the_segment(client: Any) -> None:
    # The gradients go as codes, so they stay the worker's; the new weights arrive in place.
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    ps_random.seed(0)
    net = tied_mlp()
    net.initialize()
    net(nd.array(global_batch(0, 8)[0]))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5}, kvstore=kv,
                            compression_params={"type": "2bit", "threshold": 0.05})
    params = list(net.collect_params().values())
    for step in range(3):
        _backward(net, step)
        trainer.step(8)
        segment = np.frombuffer(kv._mapped, np.uint8)
        weights_inside = [np.shares_memory(param.data()._data, segment) for param in params]
        gradients_inside = [np.shares_memory(param.grad()._data, segment) for param in params]
        del segment  # the mapping closes with the store
        assert all(weights_inside)  # moved in at the end of the first step
        assert not any(gradients_inside)
    before = _arrays(net, "data")
    kv.close()
    for param, want in zip(params, before):
        np.testing.assert_array_equal(param.data().asnumpy(), want)
        param.set_data(param.data() + 1)  # memory of its own again, writable
        np.testing.assert_array_equal(param.data().asnumpy(), want + 1)


def test_two_workers_each_keep_their_own_gradient(make_server: Callable[..., Any]) -> None:
    server = make_server()
    grads: dict[int, list[np.ndarray]] = {}

    def work() -> None:
        with server.connect() as client:
            kv = client.kvstore("mlp", mode="sync", num_workers=2, timeout=30)
            ps_random.seed(0)
            net = tied_mlp()
            net.initialize()
            trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5},
                                    kvstore=kv)
            for step in range(3):
                _backward(net, step, part=kv.rank)
                trainer.step(16)
            grads[kv.rank] = _arrays(net, "grad")
            kv.close()

    server.connect().create_store("mlp")
    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(grads) == [0, 1]
    summed = [mine + theirs for mine, theirs in zip(grads[0], grads[1])]
    for rank in (0, 1):  # each worker's gradient is its own batch's, not the sum the server took
        assert not any(np.allclose(mine, total) for mine, total in zip(grads[rank], summed))


def test_values_offset_over_the_gradients_is_refused_and_changes_nothing(
    joined: Any, steps: Steps,
) -> None:
    segment = segments.create(4096)
    try:
        requests = _requests(segment.name)
        for offset in (8, 4096 - 16):  # inside the gradient's region; values past the end
            requests[0].begin.values_offset = offset
            with pytest.raises(InvalidArgument, match="values_offset"):
                steps(joined, requests)
        assert _stored(joined) == [1.0, 1.0, 1.0]
    finally:
        segment.close()


def _shared_step(segment: Any, gradient: list[float], same: bool = False) -> list[Any]:
    """A step of key "w" through `segment`, its gradient at offset 0 and its value past it."""
    np.frombuffer(segment.mapped, "<f4", 3)[:] = gradient
    begin = pb.PushBegin(store="mlp", rank=0, parameter_count=1, shared_memory=segment.name,
                         values_offset=segments.ALIGN, same_parameters=same)
    return [pb.PushRequest(begin=begin)] + ([] if same else _requests(segment.name)[1:])


def test_a_step_with_the_same_parameters_sends_and_gets_no_specs(joined: Any) -> None:
    segment = segments.create(2 * segments.ALIGN)
    try:
        def value() -> list[float]:
            return np.frombuffer(segment.mapped, "<f4", 3, segments.ALIGN).tolist()

        outbox: list[Any] = []
        for step, same in enumerate([False, True, True]):
            outbox += _shared_step(segment, [step, step, step], same)
            replies = list(joined.stream("PushPullSteps", iter(outbox)))
            # Without an optimizer the gradient becomes the value.
            assert value() == [step, step, step]
            kinds = [reply.WhichOneof("item") for reply in replies]
            assert (kinds[-1] == "begin") == same  # then the answer is PullBegin alone
    finally:
        segment.close()


def test_same_parameters_on_a_calls_first_step_is_refused_and_changes_nothing(
    joined: Any, steps: Steps,
) -> None:
    segment, other = segments.create(2 * segments.ALIGN), segments.create(2 * segments.ALIGN)
    try:
        with pytest.raises(InvalidArgument, match="same_parameters needs"):
            steps(joined, _shared_step(segment, [5, 5, 5], True))
        assert _stored(joined) == [1.0, 1.0, 1.0]
        first = _shared_step(segment, [5, 5, 5])
        again = _shared_step(other, [6, 6, 6], same=True)
        again[0].begin.parameter_count = 2
        with pytest.raises(InvalidArgument, match="as many parameters"):
            steps(joined, first + again)
        assert _stored(joined) == [5.0, 5.0, 5.0]  # the first step only
    finally:
        for one in (segment, other):
            one.close()


def test_a_same_parameters_step_through_another_segment_reads_that_segment(
    joined: Any, steps: Steps,
) -> None:
    segment, other = segments.create(2 * segments.ALIGN), segments.create(2 * segments.ALIGN)
    try:
        steps(joined, _shared_step(segment, [5, 5, 5]) + _shared_step(other, [7, 7, 7], True))
        # Without an optimizer the gradient becomes the value: the second step's, read where
        # it names it, written back there.
        assert _stored(joined) == [7.0, 7.0, 7.0]
        assert np.frombuffer(other.mapped, "<f4", 3, segments.ALIGN).tolist() == [7.0, 7.0, 7.0]
    finally:
        for one in (segment, other):
            one.close()


def test_steps_of_other_keys_and_kinds_in_turn_answer_each_steps_values(client: Any) -> None:
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    kv.init(["a", "b"], [nd.zeros(3), nd.zeros((2, 2))])
    outs = [nd.zeros(3), nd.zeros((2, 2))]
    # Without an optimizer each step's gradient becomes the value.
    for step, keys in enumerate([["a", "b"], ["a", "b"], ["a"], ["a", "b"], ["b"]], start=1):
        gradients = {"a": nd.ones(3) * step, "b": nd.ones((2, 2)) * -step}
        if step % 2:
            kv.pushpull(keys, [gradients[key] for key in keys],
                        out=[outs[0 if key == "a" else 1] for key in keys])
        else:  # values over the gradients, then pulled
            kv.push(keys, [gradients[key] for key in keys])
            kv.pull(keys, out=[outs[0 if key == "a" else 1] for key in keys])
        for key in keys:
            got = outs[0 if key == "a" else 1].asnumpy()
            np.testing.assert_array_equal(got, gradients[key].asnumpy())
    kv.close()


def test_compression_set_after_plain_steps_leaves_the_gradients_whole(client: Any) -> None:
    # After plain steps the gradients live in the segment; codes must not land on them.
    nets = []
    for store, shared in (("in-segment", True), ("over-socket", False)):
        kv = client.kvstore(store, mode="sync", num_workers=1, shared_memory=shared)
        (net, trainer), _ = _local_and_remote_nets(kv, grad_req="add")
        trainer = gluon.Trainer(net.collect_params(), "sgd",
                                {"learning_rate": 0.5, "momentum": 0.9}, kvstore=kv)
        for step in range(4):
            if step == 2:
                kv.set_gradient_compression({"type": "2bit", "threshold": 0.01})
            _backward(net, step)
            trainer.step(8)
        nets.append((net, kv))
    _assert_same_weights_and_gradients(nets[0][0], nets[1][0])
    for _, kv in nets:
        kv.close()
