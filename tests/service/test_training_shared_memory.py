"""The same-host data path of training: workers on the server's host move their data through
shared memory, end where the socket path ends, and bad segments are refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from training_runs import train_tied_mlp

from paramstore import nd
from paramstore.client.errors import InvalidArgument
from paramstore.proto import shared_memory as segments
from paramstore.proto.v1 import paramstore_pb2 as pb


@pytest.mark.parametrize("compression", [None, {"type": "2bit", "threshold": 0.05},
                                         {"type": "fp16"}])
def test_a_worker_on_the_servers_host_ends_where_the_socket_path_ends(
    make_server: Callable[..., Any], compression: dict[str, Any] | None,
) -> None:
    with make_server().connect() as client:
        shared = client.kvstore("shared", mode="sync", num_workers=1)
        socket = client.kvstore("socket", mode="sync", num_workers=1, shared_memory=False)
        assert (shared.shared_memory, socket.shared_memory) == (True, False)
        through_memory = train_tied_mlp(shared, compression)
        through_socket = train_tied_mlp(socket, compression)
        shared.close()
    for got, want in zip(through_memory, through_socket):
        np.testing.assert_array_equal(got, want)
    assert shared.bytes_sent == socket.bytes_sent


def test_a_probe_the_server_cannot_open_means_the_socket(client: Any) -> None:
    client.create_store("mlp")
    reply = client.call("JoinTraining", pb.JoinTrainingRequest(
        store="mlp", mode="sync", num_workers=2, shared_memory_probe=segments.new_name(),
    ))
    assert reply.shared_memory_probe == b""


def test_the_segment_is_released_on_close(client: Any) -> None:
    kv = client.kvstore("mlp", mode="sync", num_workers=1)
    kv.init("w", nd.ones(3))
    kv.push("w", nd.ones(3))
    name = kv._segment.name
    kv.close()
    with pytest.raises(OSError):
        segments.open_mapped(name)


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


def _stored(client: Any) -> list[float]:
    return client.store("mlp").collect_params()["w"].data().asnumpy().tolist()


def test_a_name_that_is_not_a_segment_is_refused(joined: Any) -> None:
    with pytest.raises(InvalidArgument, match="not a shared-memory segment name"):
        list(joined.stream("PushPull", iter(_requests("../../etc/passwd"))))
    assert _stored(joined) == [1.0, 1.0, 1.0]


def test_a_segment_that_does_not_exist_is_refused(joined: Any) -> None:
    with pytest.raises(InvalidArgument, match="cannot open shared-memory segment"):
        list(joined.stream("PushPull", iter(_requests(segments.new_name()))))


def test_a_segment_too_small_for_the_parameters_is_refused(joined: Any) -> None:
    segment = segments.create(8)
    try:
        size = segment.size  # the system may round it up to a page
        with pytest.raises(InvalidArgument, match="too few for parameter 'w'"):
            list(joined.stream("PushPull", iter(_requests(segment.name, size=size))))
        assert _stored(joined) == [1.0, 1.0, 1.0]
    finally:
        segment.close()
        segment.unlink()


def test_chunks_after_a_parameter_in_shared_memory_are_refused(joined: Any) -> None:
    segment = segments.create(64)
    try:
        with pytest.raises(InvalidArgument, match="no chunk may follow"):
            list(joined.stream("PushPull", iter(_requests(segment.name, chunk=b"\0" * 12))))
        assert _stored(joined) == [1.0, 1.0, 1.0]
    finally:
        segment.close()
        segment.unlink()


def test_shared_memory_on_a_plain_push_is_refused(joined: Any) -> None:
    requests = _requests(segments.new_name())
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
    with pytest.raises(OSError):
        segments.open_mapped(done.stdout.strip())
