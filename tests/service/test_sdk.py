"""Every RPC through the SDK against a real server on loopback."""

import os
import shutil
import signal
import subprocess

import grpc
import numpy as np
import pytest
import safetensors.numpy
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore import checkpoint
from paramstore.client import connect
from paramstore.client.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
    ParamstoreError,
    ResourceExhausted,
    SnapshotNotFound,
    StoreNotFound,
    Unauthenticated,
    Unavailable,
)
from paramstore.gluon import nn


def mlp_params():
    rng = np.random.default_rng(0)
    return {
        "dense0_weight": rng.standard_normal((256, 20)).astype(np.float32),
        "dense0_bias": np.zeros(256, np.float32),
        "dense1_weight": rng.standard_normal((10, 256)).astype(np.float32),
        "dense1_bias": np.zeros(10, np.float32),
    }


class LocalDict(dict):
    """A mapping with a prefix, as the SDK reads a ParameterDict."""

    def __init__(self, prefix, items):
        super().__init__(items)
        self.prefix = prefix


@pytest.fixture
def mlp(client):
    store = client.create_store("mlp")
    store.push(LocalDict("mlp_", mlp_params()))
    return store


# ---- connecting --------------------------------------------------------------------------------


@given(host=st.sampled_from(["localhost", "127.0.0.1", "[::1]", "example.org",
                             "http://127.0.0.1", "grpc://localhost"]),
       port=st.one_of(st.none(), st.integers(65536, 10**9), st.just(0), st.text(max_size=5)))
@settings(max_examples=50, deadline=None)
def test_an_address_without_a_port_a_server_can_have_raises_invalid_argument(host, port):
    # gRPC itself would dial 443 for a bare host and port % 65536 for a larger one.
    address = host if port is None else f"{host}:{port}"
    if "://" not in host and isinstance(port, str) and port.isdigit() and 0 < int(port) < 65536:
        return  # a valid address, found by the text strategy
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        connect(address)
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        connect(f"127.0.0.1:50051,{address}")


def test_exporting_into_a_folder_raises_naming_it_and_writes_nothing(mlp, tmp_path):
    mlp.snapshot()
    folder = tmp_path / "exports"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=f"{folder} is a folder"):
        mlp.export_snapshot("latest", folder)
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".exports*"))


# ---- stores ------------------------------------------------------------------------------------


def test_created_stores_are_listed_and_deleted(client):
    client.create_store("b")
    client.create_store("a")
    assert client.list_stores() == ["a", "b"]
    client.delete_store("a")
    assert client.list_stores() == ["b"]


def test_creating_an_existing_store_raises_already_exists(client):
    client.create_store("mlp")
    with pytest.raises(AlreadyExists, match="mlp"):
        client.create_store("mlp")


def test_opening_a_missing_store_raises_store_not_found(client):
    with pytest.raises(StoreNotFound, match="'ghost'"):
        client.store("ghost")


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".", "x" * 200, "bad\x00name"])
def test_bad_store_names_raise_invalid_argument(client, name):
    with pytest.raises(InvalidArgument):
        client.create_store(name)


def test_store_info_reports_prefix_count_and_bytes(mlp):
    info = mlp.info()
    assert (info.prefix, info.parameter_count) == ("mlp_", 4)
    assert info.data_bytes == sum(array.nbytes for array in mlp_params().values())


# ---- collect_params, push, pull ----------------------------------------------------------------


def test_collect_params_prints_like_a_parameter_dict(mlp):
    assert str(mlp.collect_params()) == (
        "mlp_ (\n"
        "  Parameter dense0_weight (shape=(256, 20), dtype=float32)\n"
        "  Parameter dense0_bias (shape=(256,), dtype=float32)\n"
        "  Parameter dense1_weight (shape=(10, 256), dtype=float32)\n"
        "  Parameter dense1_bias (shape=(10,), dtype=float32)\n"
        ")"
    )


def test_collect_params_selects_with_a_start_anchored_regex(mlp):
    assert list(mlp.collect_params(".*weight")) == ["dense0_weight", "dense1_weight"]
    assert list(mlp.collect_params("weight")) == []


def test_an_empty_store_prints_an_empty_listing(client):
    assert str(client.create_store("e").collect_params()) == "(\n\n)"


def test_a_bad_regex_raises_invalid_argument(mlp):
    with pytest.raises(InvalidArgument, match="regex"):
        mlp.collect_params("(unclosed")


def test_a_remote_parameter_pulls_its_data_as_an_ndarray(mlp):
    weight = mlp.collect_params()["dense0_weight"]
    assert (weight.name, weight.shape, weight.dtype) == ("dense0_weight", (256, 20), "float32")
    np.testing.assert_array_equal(weight.data().asnumpy(), mlp_params()["dense0_weight"])


def test_set_data_on_a_remote_parameter_writes_the_store(mlp):
    bias = mlp.collect_params()["dense1_bias"]
    bias.set_data(np.arange(10, dtype=np.float32))
    np.testing.assert_array_equal(bias.data().asnumpy(), np.arange(10))


def test_set_data_with_another_shape_raises_failed_precondition(mlp):
    with pytest.raises(FailedPrecondition, match="shape"):
        mlp.collect_params()["dense1_bias"].set_data(np.zeros(3, np.float32))


def test_pull_fills_local_arrays_in_place(mlp):
    local = {name: np.zeros_like(array) for name, array in mlp_params().items()}
    mlp.pull(local)
    np.testing.assert_array_equal(local["dense1_weight"], mlp_params()["dense1_weight"])


@pytest.mark.parametrize("verb", ["push", "pull"])
def test_a_net_given_for_its_collect_params_raises_type_error_saying_what_to_pass(mlp, verb):
    net = nn.Dense(256, in_units=20)
    net.initialize()
    before = mlp.info().version
    with pytest.raises(TypeError, match=rf"^{verb} takes net.collect_params\(\) .* not Dense$"):
        getattr(mlp, verb)(net)
    assert mlp.info().version == before


def test_pull_of_a_name_the_store_lacks_raises_parameter_not_found(mlp):
    with pytest.raises(ParameterNotFound, match="extra"):
        mlp.pull({"extra": np.zeros(1)})


def test_pushing_another_shape_raises_and_changes_nothing(mlp):
    version = mlp.info().version
    with pytest.raises(FailedPrecondition, match="dense0_bias"):
        mlp.push({"new": np.ones(1, np.float32), "dense0_bias": np.ones(3, np.float32)})
    assert mlp.info().version == version
    assert "new" not in mlp.collect_params()


def test_pushing_a_dtype_the_wire_cannot_carry_raises_invalid_argument(client):
    store = client.create_store("s")
    with pytest.raises(ParamstoreError):
        store.push({"c": np.ones(2, np.complex64)})


def test_a_store_of_many_small_parameters_round_trips(client):
    params = {f"p{index}_weight": np.full(3, index, np.float32) for index in range(2500)}
    store = client.create_store("many")
    store.push(params)
    listing = store.collect_params()
    assert list(listing) == list(params)
    local = {name: np.zeros(3, np.float32) for name in params}
    store.pull(local)
    assert all(local[name][0] == index for index, name in enumerate(params))


def test_a_tensor_of_many_chunks_round_trips_exactly(client):
    big = np.random.default_rng(1).standard_normal((3, 1 << 19)).astype(np.float32)  # 6 MiB
    store = client.create_store("big")
    store.push({"big": big})
    np.testing.assert_array_equal(store.collect_params()["big"].data().asnumpy(), big)


def test_scalars_and_integer_dtypes_round_trip(client):
    params = {"step": np.array(3, np.int64), "mask": np.array([True, False]),
              "half": np.ones((2, 2), np.float16)}
    store = client.create_store("s")
    store.push(params)
    local = {name: np.zeros_like(array) for name, array in params.items()}
    store.pull(local)
    for name, array in params.items():
        np.testing.assert_array_equal(local[name], array)


# ---- initialize --------------------------------------------------------------------------------


def test_initialize_runs_a_registered_initializer_on_the_server(mlp):
    from paramstore import init

    names = mlp.initialize(init.Constant(0.5), select=".*weight", force_reinit=True)
    assert names == ["dense0_weight", "dense1_weight"]
    weights = mlp.collect_params()["dense1_weight"].data().asnumpy()
    np.testing.assert_array_equal(weights, np.full((10, 256), 0.5))


def test_initialize_without_force_leaves_data_alone(mlp):
    assert mlp.initialize("zeros") == []


def test_a_custom_initializer_raises_invalid_argument_naming_the_supported(mlp):
    from paramstore import init

    class Halves(init.Initializer):  # defined here, never registered: the server lacks it
        def _init_weight(self, name, arr):
            arr[:] = 0.5

    with pytest.raises(InvalidArgument, match="xavier") as raised:
        mlp.initialize(Halves(), force_reinit=True)
    assert "halves" in str(raised.value) and "initialize the local net" in str(raised.value)
    assert "register" not in str(raised.value)  # registering on the client would not help


# ---- ties --------------------------------------------------------------------------------------


def test_a_tie_makes_one_tensor_visible_under_two_names(mlp):
    mlp.push({"dense2_weight": np.zeros((10, 256), np.float32)})
    mlp.tie("dense2_weight", "dense1_weight")
    listing = mlp.collect_params()
    listing["dense2_weight"].set_data(np.ones((10, 256), np.float32))
    np.testing.assert_array_equal(listing["dense1_weight"].data().asnumpy(), 1.0)
    assert mlp.ties() == {"dense2_weight": "dense1_weight"}


def test_untie_separates_the_names(mlp):
    mlp.tie("alias", "dense0_bias")
    mlp.untie("alias")
    assert mlp.ties() == {}
    mlp.collect_params()["alias"].set_data(np.ones(256, np.float32))
    np.testing.assert_array_equal(mlp.collect_params()["dense0_bias"].data().asnumpy(), 0)


def test_the_same_array_under_two_names_is_pushed_as_a_tie(client):
    shared = np.ones((4, 4), np.float32)
    store = client.create_store("s")
    store.push({"a": shared, "b": shared})
    assert store.ties() == {"b": "a"}
    assert store.info().data_bytes == shared.nbytes


def test_a_tie_survives_snapshot_and_restore(mlp):
    mlp.tie("out_weight", "dense1_weight")
    snap = mlp.snapshot()
    mlp.untie("out_weight")
    mlp.restore(snap.id)
    mlp.collect_params()["out_weight"].set_data(np.full((10, 256), 3.0, np.float32))
    np.testing.assert_array_equal(mlp.collect_params()["dense1_weight"].data().asnumpy(), 3.0)


# ---- snapshots ---------------------------------------------------------------------------------


def test_restore_brings_back_the_snapshotted_values(mlp):
    snap = mlp.snapshot(step=100, metadata={"note": "x"})
    mlp.initialize("zeros", force_reinit=True)
    mlp.restore(snap.id)
    np.testing.assert_array_equal(
        mlp.collect_params()["dense0_weight"].data().asnumpy(), mlp_params()["dense0_weight"]
    )
    assert (snap.step, snap.metadata) == (100, {"note": "x"})


def test_snapshots_are_listed_oldest_first_and_deleted(mlp):
    first, second = mlp.snapshot(step=1), mlp.snapshot(step=2)
    assert [info.id for info in mlp.snapshots()] == [first.id, second.id]
    mlp.delete_snapshot(first.id)
    assert [info.step for info in mlp.snapshots()] == [2]
    with pytest.raises(SnapshotNotFound):
        mlp.restore(first.id)


@pytest.mark.parametrize("snapshot_id", ["../mlp", "a/b", ".."])
def test_bad_snapshot_ids_raise_invalid_argument(mlp, snapshot_id):
    with pytest.raises(InvalidArgument):
        mlp.restore(snapshot_id)


def test_retention_keeps_the_newest_snapshots(make_server):
    with make_server(keep=2).connect() as client:
        store = client.create_store("s")
        ids = [store.snapshot(step=step).id for step in range(4)]
        assert [info.id for info in store.snapshots()] == ids[2:]


def test_an_exported_snapshot_opens_with_plain_safetensors(mlp, tmp_path):
    mlp.tie("dense2_weight", "dense1_weight")
    snap = mlp.snapshot()
    mlp.export_snapshot(snap.id, tmp_path / "mlp.safetensors")
    plain = safetensors.numpy.load_file(tmp_path / "mlp.safetensors")
    assert set(plain) == set(mlp_params())
    np.testing.assert_array_equal(plain["dense0_weight"], mlp_params()["dense0_weight"])
    assert checkpoint.load(tmp_path / "mlp.safetensors").aliases == {
        "dense2_weight": "dense1_weight"
    }


def test_an_imported_snapshot_becomes_a_store_like_the_original(client, mlp, tmp_path):
    mlp.export_snapshot(mlp.snapshot(step=5).id, tmp_path / "mlp.safetensors")
    info = client.import_snapshot(tmp_path / "mlp.safetensors", store="mlp2")
    assert (info.store, info.step) == ("mlp2", 5)
    assert str(client.store("mlp2").collect_params()) == str(mlp.collect_params())


def test_importing_a_plain_safetensors_file_works(client, tmp_path):
    safetensors.numpy.save_file({"w": np.ones((2, 3), np.float32)}, tmp_path / "plain.st")
    client.import_snapshot(tmp_path / "plain.st", store="plain")
    assert str(client.store("plain").collect_params()) == (
        "(\n  Parameter w (shape=(2, 3), dtype=float32)\n)"
    )


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_importing_a_malformed_file_raises_invalid_argument_and_creates_nothing(
    client, tmp_path, damage
):
    data = bytearray(checkpoint.dumps({"w": np.ones(1000, np.float32)}))
    if damage == "truncate":
        data = data[:-100]
    elif damage == "garbage":
        data = bytearray(b"\xff" * 64)
    else:
        data[-10] ^= 0xFF
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    with pytest.raises(InvalidArgument):
        client.import_snapshot(tmp_path / "bad.safetensors", store="bad")
    assert client.list_stores() == []


def test_importing_over_the_size_limit_raises_resource_exhausted(make_server, tmp_path):
    checkpoint.save(tmp_path / "f.safetensors", {"w": np.ones(1000, np.float32)})
    with make_server(max_import_bytes=1000).connect() as client:
        with pytest.raises(ResourceExhausted):
            client.import_snapshot(tmp_path / "f.safetensors", store="s")


def test_importing_into_an_existing_store_raises_already_exists(client, mlp, tmp_path):
    checkpoint.save(tmp_path / "f.safetensors", {"w": np.ones(3, np.float32)})
    with pytest.raises(AlreadyExists):
        client.import_snapshot(tmp_path / "f.safetensors", store="mlp")


def test_exporting_a_missing_snapshot_raises_snapshot_not_found(mlp, tmp_path):
    (tmp_path / "exports").mkdir()
    with pytest.raises(SnapshotNotFound):
        mlp.export_snapshot("00000042", tmp_path / "exports" / "x.safetensors")
    assert os.listdir(tmp_path / "exports") == []


def test_deleting_a_store_deletes_its_snapshots(client, mlp, server):
    mlp.snapshot()
    client.delete_store("mlp")
    assert not (server.data_dir / "mlp").exists()


# ---- authentication, TLS, health, reflection ---------------------------------------------------


def test_a_call_without_the_token_raises_unauthenticated(make_server):
    server = make_server(token="s3cret")
    with connect(server.address) as client, pytest.raises(Unauthenticated, match="token"):
        client.list_stores()


def test_a_wrong_token_raises_unauthenticated(make_server):
    server = make_server(token="s3cret")
    with connect(server.address, token="guess") as client, pytest.raises(Unauthenticated):
        client.create_store("s")


def test_the_right_token_is_accepted_for_streams_too(make_server):
    with make_server(token="s3cret").connect() as client:
        store = client.create_store("s")
        store.push({"w": np.ones(3, np.float32)})
        assert list(store.collect_params()) == ["w"]


def test_health_answers_without_a_token(make_server):
    server = make_server(token="s3cret")
    with grpc.insecure_channel(server.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="paramstore.v1.ParamStore")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server):
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request])))
    names = {service.name for service in reply.list_services_response.service}
    assert "paramstore.v1.ParamStore" in names and "grpc.health.v1.Health" in names


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_connections_work_with_the_servers_certificate(make_server, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = make_server(tls=(cert.read_bytes(), key.read_bytes()))
    with connect(server.address, tls=cert) as client:
        client.create_store("secure")
        assert client.list_stores() == ["secure"]


# ---- the server process ------------------------------------------------------------------------


def test_an_unreachable_server_raises_unavailable_saying_how_to_start_one():
    with connect("127.0.0.1:1", timeout=5) as client, pytest.raises(Unavailable) as raised:
        client.list_stores()
    assert str(raised.value) == (
        "cannot reach a paramstore server at 127.0.0.1:1: connection refused; is one running "
        "there? (`paramstore serve --address 127.0.0.1:1` starts one)")


def test_sigterm_drains_and_exits_cleanly(spawn_server):
    server = spawn_server()
    with server.connect() as client:
        client.create_store("s")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


def test_a_killed_server_restarts_from_its_latest_snapshot(spawn_server):
    first = spawn_server()
    with first.connect() as client:
        store = client.create_store("mlp")
        store.push(LocalDict("mlp_", mlp_params()))
        store.snapshot(step=1)
        store.push({"dense0_bias": np.ones(256, np.float32)})
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    second = spawn_server(first.data_dir)
    with second.connect() as client:
        store = client.store("mlp")
        assert store.info().prefix == "mlp_"
        np.testing.assert_array_equal(
            store.collect_params()["dense0_bias"].data().asnumpy(), np.zeros(256)
        )


def test_ten_thousand_small_parameters_round_trip(client):
    params = {f"block{i // 100}_dense{i % 100}_weight": np.full(4, i, np.float32)
              for i in range(10_000)}
    store = client.create_store("many")
    store.push(params)
    pulled = {name: np.zeros(4, np.float32) for name in params}
    store.pull(pulled)
    assert all(np.array_equal(pulled[name], params[name]) for name in params)
