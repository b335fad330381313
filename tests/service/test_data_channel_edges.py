"""Data channel steps at their edges: a worker that never reads its values does not hold up the
others, tensors far bigger than the socket buffers do not deadlock, and any order and size of
keys ends where gRPC stepping ends, bit for bit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramstore import nd, optimizer
from paramstore.client import connect
from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.data_channel import DataLimits

READ_TIMEOUT = 0.5  # also how long the server waits for a worker to read its values
LIMITS = DataLimits(read_timeout=READ_TIMEOUT)
SGD = {"learning_rate": 0.1, "momentum": 0.9}
BIG = (1 << 22,)  # 16 MiB of float32: more than a loopback socket's buffers hold


def spec(name: str, shape: Sequence[int]) -> pb.ParameterSpec:
    return pb.ParameterSpec(name=name, shape=shape, dtype="float32", dtype_label="float32",
                            kind="Parameter", has_data=True)


def raw_connection(client: Any, store: str, rank: int) -> socket.socket:
    """A connection of `rank` to the data channel, admitted with its ticket."""
    ticket = client.call("OpenDataChannel", pb.OpenDataChannelRequest(store=store, rank=rank))
    stream = socket.create_connection((client.address.rsplit(":", 1)[0], ticket.port),
                                      timeout=10)
    stream.sendall(ticket.ticket)
    assert frames.read_message(stream, pb.DataStatus).code == 0
    return stream


def step_header(store: str, rank: int, step: int, *specs: pb.ParameterSpec) -> bytes:
    data = pb.DataStep(begin=pb.PushBegin(store=store, rank=rank, step=step,
                                          parameter_count=len(specs)),
                       parameters=specs).SerializeToString()
    return frames.LENGTH.pack(len(data)) + data


def read_value(stream: socket.socket, shape: Sequence[int]) -> np.ndarray:
    """The answer to a step of one key: an OK status and a value of `shape`."""
    status = frames.read_message(stream, pb.DataStatus)
    assert status.code == 0, status.message
    value = np.empty(shape, np.float32)
    frames.read_into(stream, memoryview(value.reshape(-1).view(np.uint8)))
    return value


def sgd_steps(weight: np.ndarray, gradients: Sequence[np.ndarray], key: str = "k"
              ) -> np.ndarray:
    """`weight` after SGD (`SGD`) steps of `gradients`, as the server computes them."""
    local = optimizer.SGD(**SGD)
    for gradient in gradients:
        updated = np.empty_like(weight)
        local.update(key, weight, gradient, out=updated)
        weight = updated
    return weight


def test_a_worker_that_never_reads_its_values_is_dropped_and_the_others_step_on(
        make_server: Callable[..., Any]) -> None:
    server = make_server(data_limits=LIMITS)
    with connect(server.address) as client, \
            client.kvstore("deaf", num_workers=2, timeout=20, shared_memory=False) as kv, \
            client.kvstore("deaf", num_workers=2, timeout=20, shared_memory=False) as other:
        kv.init("w", nd.zeros(BIG))
        stream = raw_connection(client, "deaf", other.rank)
        stream.sendall(step_header("deaf", other.rank, 1, spec("w", BIG))
                       + np.ones(BIG, np.float32).tobytes())  # and reads nothing
        out = nd.zeros(BIG)
        kv.pushpull("w", nd.full(BIG, 2.0), out=out)
        assert np.all(out.asnumpy() == 3.0)  # the round completed with both gradients
        time.sleep(READ_TIMEOUT * 3)
        assert _received_until_closed(stream) < np.zeros(BIG, np.float32).nbytes
        # The rank steps on, on a new connection.
        again = raw_connection(client, "deaf", other.rank)
        again.sendall(step_header("deaf", other.rank, 2, spec("w", BIG))
                      + np.ones(BIG, np.float32).tobytes())
        kv.pushpull("w", nd.full(BIG, 2.0), out=out)
        assert np.all(read_value(again, BIG) == 3.0)


def _received_until_closed(stream: socket.socket) -> int:
    """The bytes the server had sent before it closed the connection."""
    sink, count = bytearray(1 << 16), 0
    stream.settimeout(5)
    try:
        while more := stream.recv_into(sink):
            count += more
    except ConnectionError:
        pass
    return count


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.sampled_from([1, 7, 1000, 300_000]), min_size=1, max_size=4),
       orders=st.randoms(use_true_random=False))
def test_keys_in_any_order_and_size_end_where_grpc_stepping_ends(
        make_server: Callable[..., Any], sizes: list[int], orders: Any) -> None:
    server = make_server(data_limits=LIMITS)
    names = [f"k{index}" for index in range(len(sizes))]
    rng = np.random.default_rng(len(sizes))
    gradients = [[rng.normal(size=size).astype(np.float32) for size in sizes]
                 for _ in range(2)]  # per rank
    key_orders = [orders.sample(range(len(sizes)), len(sizes)) for _ in range(2)]
    grpc_stepped, channel_stepped = (
        _train_two_workers(server.address, names, gradients, key_orders, data_channel)
        for data_channel in (False, True))
    for by_grpc, by_channel in zip(grpc_stepped, channel_stepped):
        assert np.array_equal(by_grpc, by_channel)


def _train_two_workers(address: str, names: list[str], gradients: list[list[np.ndarray]],
                       key_orders: list[list[int]], data_channel: bool) -> list[np.ndarray]:
    """Three sync steps of two workers on a new store, each worker sending its keys in its
    own order; the values both end with."""
    ends: dict[int, list[np.ndarray]] = {}
    channels: dict[int, bool] = {}
    with connect(address) as client:
        store = f"s{len(client.list_stores())}"
        kvs = [client.kvstore(store, num_workers=2, timeout=20, shared_memory=False,
                              data_channel=data_channel) for _ in range(2)]
        kvs[0].init(names, [nd.zeros(gradient.shape) for gradient in gradients[0]])
        kvs[0].set_optimizer(optimizer.SGD(**SGD))

        def train(kv: Any) -> None:
            order = key_orders[kv.rank]
            outs = [nd.zeros(gradients[kv.rank][index].shape) for index in order]
            for _ in range(3):
                kv.pushpull([names[index] for index in order],
                            [nd.array(gradients[kv.rank][index]) for index in order], out=outs)
            channels[kv.rank] = kv.data_channel
            ends[kv.rank] = [outs[order.index(index)].asnumpy() for index in range(len(names))]

        threads = [threading.Thread(target=train, args=(kv,)) for kv in kvs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for kv in kvs:
            kv.close()
    assert channels == {0: data_channel, 1: data_channel}
    for mine, theirs in zip(ends[0], ends[1]):
        assert np.array_equal(mine, theirs)
    return ends[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_steps_of_tensors_bigger_than_the_socket_buffers_overlap_without_a_deadlock(
        make_server: Callable[..., Any], workers: int) -> None:
    server = make_server(data_limits=LIMITS)
    gradient = np.full(BIG, 0.5, np.float32)
    with connect(server.address) as client:
        kvs = [client.kvstore(f"big{workers}", num_workers=workers, timeout=20,
                              shared_memory=False) for _ in range(workers)]
        kvs[0].init(["x", "y"], [nd.zeros(BIG), nd.zeros(BIG)])
        kvs[0].set_optimizer(optimizer.SGD(**SGD))
        outs = {kv.rank: [nd.zeros(BIG), nd.zeros(BIG)] for kv in kvs}

        def train(kv: Any) -> None:
            for _ in range(2):
                kv.pushpull(["x", "y"], [nd.array(gradient), nd.array(gradient)],
                            out=outs[kv.rank])

        threads = [threading.Thread(target=train, args=(kv,)) for kv in kvs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(kv.data_channel for kv in kvs)
        for kv in kvs:
            kv.close()
    expected = sgd_steps(np.zeros(BIG, np.float32), [gradient * workers] * 2)
    for values in outs.values():
        assert all(np.array_equal(value.asnumpy(), expected) for value in values)
