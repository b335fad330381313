"""Honest statuses: whatever a client sends, it gets a status that says what happened and no
Python text or server path; a failure the server did not expect is INTERNAL with an error id
that the log shows beside the traceback; a full disk is RESOURCE_EXHAUSTED. One address, one
server."""

import errno
import logging
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramstore.client.errors import Internal, ResourceExhausted
from paramstore.proto import wire
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server import create_server, failures
from paramstore.server.process import start_serve

pytest_plugins = ("server_fixtures",)  # `make_server`, `server`

METHODS = sorted(pb.DESCRIPTOR.services_by_name["ParamStore"].methods_by_name)


def test_an_unexpected_failure_is_internal_with_an_error_id_in_the_log(
        make_server, monkeypatch, caplog):
    server = make_server()
    with server.connect() as client:
        store = client.create_store("s")
        store.push({"w": np.ones(3, np.float32)})

        def broken(*args, **kwargs):
            raise RuntimeError(f"cannot open {server.data_dir}/s/secret")

        monkeypatch.setattr(server.server.registry.catalog, "finish_snapshot", broken)
        with caplog.at_level(logging.ERROR, logger="paramstore.server"), \
                pytest.raises(Internal) as failed:
            store.snapshot()
    message = str(failed.value)
    assert failed.value.code == "INTERNAL"
    assert str(server.data_dir) not in message and "RuntimeError" not in message
    error_id = re.search(r"error id ([0-9a-f]{8})", message).group(1)
    logged = [record for record in caplog.records if error_id in record.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log


def test_a_full_disk_is_resource_exhausted_and_writes_nothing(make_server, monkeypatch):
    server = make_server()
    with server.connect() as client:
        store = client.create_store("s")
        store.push({"w": np.ones(3, np.float32)})

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", str(server.data_dir))

        monkeypatch.setattr(server.server.registry.catalog.backend, "write", full)
        with pytest.raises(ResourceExhausted, match="full") as failed:
            store.snapshot()
        assert str(server.data_dir) not in str(failed.value)
        monkeypatch.undo()
        assert store.snapshots() == []
        store.snapshot()  # space is back: the store works as before


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), payloads=st.lists(st.binary(max_size=64), max_size=3))
def test_garbage_requests_never_get_unknown_nor_python_text(server, method, payloads):
    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream(wire.path(method))
        try:
            for _ in call(iter(payloads), timeout=10):
                pass
        except grpc.RpcError as error:
            assert error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED)
            details = error.details() or ""
            assert "Traceback" not in details and "Exception" not in details
            assert str(server.data_dir) not in details
    with grpc.insecure_channel(server.address) as channel:  # and the server still answers
        stub = channel.unary_unary(wire.path("ListStores"),
                                   request_serializer=pb.ListStoresRequest.SerializeToString,
                                   response_deserializer=pb.ListStoresResponse.FromString)
        stub(pb.ListStoresRequest(), timeout=10)


def test_a_second_server_on_an_address_in_use_fails_clearly(server):
    with pytest.raises(RuntimeError, match="address is in use"):
        create_server(server.address, data_dir=server.data_dir.with_name("other"))


def test_serve_on_an_address_in_use_exits_with_a_message(server, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "paramstore.server", "--address", server.address,
         "--data-dir", str(tmp_path / "other")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "address is in use" in result.stderr


def test_serve_writes_its_bound_address_to_the_port_file(tmp_path):
    process, address = start_serve(tmp_path / "data")
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address) and not address.endswith(":0")
        with grpc.insecure_channel(address) as channel:
            listing = channel.unary_unary(
                wire.path("ListStores"),
                request_serializer=pb.ListStoresRequest.SerializeToString,
                response_deserializer=pb.ListStoresResponse.FromString)
            assert list(listing(pb.ListStoresRequest(), timeout=10).stores) == []
    finally:
        process.terminate()
        process.wait()


def test_metrics_listen_on_loopback_even_when_the_server_listens_everywhere(tmp_path):
    server, _ = create_server("0.0.0.0:0", data_dir=tmp_path / "data", metrics_port=0)
    try:
        assert server.metrics.host == "127.0.0.1"
    finally:
        server.stop(None).wait()


def test_a_full_disk_outside_storage_is_resource_exhausted_without_its_path():
    answer = failures.unexpected("Push", OSError(errno.ENOSPC, "No space left", "/srv/secret"))
    assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "/srv/secret" not in answer.message and "full" in answer.message
    other = failures.unexpected("Push", KeyError("/srv/secret"))
    assert other.code == grpc.StatusCode.INTERNAL and "/srv/secret" not in other.message
