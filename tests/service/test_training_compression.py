"""2-bit gradient compression through the server: MXNet 1.9.1's dist_sync values, training
that ends where the in-process KVStore ends, and refused settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from training_runs import TRANSPORTS, train_tied_mlp

from paramstore import kvstore, nd
from paramstore.client.errors import InvalidArgument
from paramstore.proto.v1 import paramstore_pb2 as pb

RECORDED = json.loads(
    (Path(__file__).parents[1] / "engine" / "two_bit_mxnet.json").read_text()
)["cases"]
DIST_SYNC = [case for case in RECORDED if case["kvstore"] == "dist_sync"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", DIST_SYNC, ids=lambda case: f"{case['workers']}w-{case['shape']}")
def test_sync_workers_pull_what_mxnet_dist_sync_pulls(make_server: Callable[..., Any], case,
                                                      transport: str):
    server = make_server()
    clients = [server.connect() for _ in range(case["workers"])]
    stores = [client.kvstore("two-bit", mode="sync", num_workers=case["workers"], timeout=20,
                             **TRANSPORTS[transport]) for client in clients]
    pulled: dict[int, list[list[float]]] = {kv.rank: [] for kv in stores}

    def work(kv: Any) -> None:
        kv.set_gradient_compression({"type": "2bit", "threshold": case["threshold"]})
        kv.init(0, nd.zeros(tuple(case["shape"])))
        out = nd.zeros(tuple(case["shape"]))
        for gradients in case["pushes"]:
            kv.push(0, nd.array(np.array(gradients[kv.rank], dtype=np.float32)))
            kv.pull(0, out=out)
            pulled[kv.rank].append(out.asnumpy().tolist())

    threads = [threading.Thread(target=work, args=(kv,)) for kv in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for client in clients:
        client.close()
    expected = np.array(case["pulled"], dtype=np.float32)
    for rank in pulled:
        np.testing.assert_array_equal(np.array(pulled[rank], dtype=np.float32), expected)


@pytest.mark.parametrize("transport", ["data-channel", "grpc"])
@pytest.mark.parametrize("compression, share", [
    ({"type": "2bit", "threshold": 0.05}, 1 / 3),  # float32 init, then a 16th a step
    ({"type": "fp16"}, 0.7),  # float32 init, then half a step
])
def test_a_compressed_worker_ends_where_the_in_process_kvstore_ends(
    make_server: Callable[..., Any], compression: dict[str, Any], share: float, transport: str,
) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1, **TRANSPORTS[transport])
        remote = train_tied_mlp(kv, compression)
        assert kv.data_channel == (transport == "data-channel")
        plain = client.kvstore("plain", mode="sync", num_workers=1, **TRANSPORTS[transport])
        train_tied_mlp(plain)
    local = train_tied_mlp(kvstore.create(), compression)
    for got, want in zip(remote, local):
        np.testing.assert_array_equal(got, want)
    assert kv.bytes_sent < plain.bytes_sent * share


def _push_pull(client: Any, compression: pb.GradientCompression, method: str = "PushPull",
               dtype: str = "float32", chunk: bytes = b"\0") -> Any:
    begin = pb.PushBegin(store="mlp", rank=0, parameter_count=1, compression=compression)
    requests = [pb.PushRequest(begin=begin),
                pb.PushRequest(parameter=pb.ParameterSpec(
                    name="w", shape=[3], dtype=dtype, dtype_label=dtype, kind="Parameter",
                    has_data=True)),
                pb.PushRequest(chunk=chunk)]
    if method == "PushPull":
        return list(client.stream(method, iter(requests)))
    return client.call(method, iter(requests))


@pytest.mark.parametrize("compression, message", [
    (pb.GradientCompression(type="3bit", threshold=0.5), "Unknown type for gradient compression"),
    (pb.GradientCompression(type="2bit"), "threshold must be greater than 0"),
])
def test_a_bad_compression_is_refused(make_server: Callable[..., Any], compression,
                                      message) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1)
        kv.init("w", nd.zeros(3))
        with pytest.raises(InvalidArgument, match=message):
            _push_pull(client, compression)


def test_compression_on_a_plain_push_is_refused(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        client.create_store("mlp")
        with pytest.raises(InvalidArgument, match="PushPull streams only"):
            _push_pull(client, pb.GradientCompression(type="2bit", threshold=0.5), "Push")


def test_compressed_codes_for_an_integer_key_are_refused(make_server: Callable[..., Any]) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1)
        kv.init("w", nd.zeros(3, dtype="int32"))
        with pytest.raises(InvalidArgument, match="need a floating-point dtype"):
            _push_pull(client, pb.GradientCompression(type="2bit", threshold=0.5),
                       dtype="int32")


def test_codes_of_the_wrong_length_are_refused_and_change_nothing(
    make_server: Callable[..., Any],
) -> None:
    with make_server().connect() as client:
        kv = client.kvstore("mlp", mode="sync", num_workers=1)
        kv.init("w", nd.ones(3))
        with pytest.raises(InvalidArgument, match="more than its 1 bytes"):
            _push_pull(client, pb.GradientCompression(type="2bit", threshold=0.5),
                       chunk=b"\xff\xff")
        stored = client.store("mlp").collect_params()["w"].data()
        assert stored.asnumpy().tolist() == [1.0, 1.0, 1.0]
