"""What goes wrong, end to end: a `paramstore serve` process killed with SIGKILL (also in the
middle of writing a snapshot), bad names, regexes, tokens, files, shapes and dtypes. Each bad
request gets its typed error, and the store is left exactly as it was."""

import json
import signal
import struct
import threading
import time
from typing import NamedTuple

import grpc
import numpy as np
import pytest
from chapter_nets import by_path, mlp, tied_net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import running_server
from storage_files import snapshot_path, store_folder

from paramstore import checkpoint
from paramstore.client.errors import (
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
    ParamstoreError,
    StoreNotFound,
    Unauthenticated,
)
from paramstore.proto.v1 import paramstore_pb2 as pb

pytest_plugins = ("server_fixtures",)  # `served`, `remote`, `mlp_store`


class Seen(NamedTuple):
    """Everything a client can see of a store."""

    listing: str
    ties: dict
    version: int
    values: dict


def state_of(store):
    listing = store.collect_params()
    values = {name: np.zeros(parameter.shape, parameter.dtype)
              for name, parameter in listing.items()}
    store.pull(values)
    return Seen(str(listing), store.ties(), store.info().version, values)


def assert_same_values(expected, seen):
    assert expected.keys() == seen.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(seen[name], array, err_msg=name)


def assert_same_state(before, after):
    assert (before.listing, before.ties, before.version) == (
        after.listing, after.ties, after.version)
    assert_same_values(before.values, after.values)


# ---- SIGKILL -----------------------------------------------------------------------------------


def test_every_store_comes_back_from_its_latest_snapshot_after_sigkill(tmp_path):
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            plain = client.create_store("mlp")
            plain.push(mlp().collect_params())
            plain.snapshot(step=1)
            tied = client.create_store("tied")
            tied.push(by_path(tied_net()))
            tied.snapshot(step=2)
            expected = {name: state_of(client.store(name)) for name in ("mlp", "tied")}
            plain.push({"dense0_bias": np.ones(256, np.float32)})  # after the snapshot: lost
        server.restart()
        with server.connect() as client:
            assert client.list_stores() == ["mlp", "tied"]
            for name, before in expected.items():
                recovered = state_of(client.store(name))
                assert (recovered.listing, recovered.ties) == (before.listing, before.ties)
                assert_same_values(before.values, recovered.values)


def test_a_tie_still_shares_one_tensor_after_sigkill_and_restart(tmp_path):
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            store = client.create_store("tied")
            store.push(by_path(tied_net()))
            store.snapshot()
        server.restart()
        with server.connect() as client:
            store = client.store("tied")
            store.collect_params()["2.weight"].set_data(np.full((8, 8), 9, np.float32))
            np.testing.assert_array_equal(store.collect_params()["1.weight"].data().asnumpy(), 9)


def test_snapshot_ids_keep_growing_across_a_restart(tmp_path):
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            first = client.create_store("s").snapshot(step=1)
        server.restart()
        with server.connect() as client:
            second = client.store("s").snapshot(step=2)
            assert [info.id for info in client.store("s").snapshots()] == [first.id, second.id]
            assert int(second.id) > int(first.id)


def test_an_empty_store_and_an_imported_one_survive_sigkill(tmp_path):
    exported = _write(tmp_path / "w.safetensors",
                      checkpoint.dumps({"w": np.arange(5, dtype=np.float32)}))
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            client.create_store("empty")
            client.import_snapshot(exported, store="imported")
        server.restart()
        with server.connect() as client:
            assert client.list_stores() == ["empty", "imported"]
            weights = client.store("imported").collect_params()["w"].data().asnumpy()
            np.testing.assert_array_equal(weights, np.arange(5))


def test_a_deleted_store_stays_deleted_after_sigkill_and_its_name_starts_afresh(tmp_path):
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            store = client.create_store("s")
            store.push({"w": np.ones(3, np.float32)})
            store.snapshot()
            client.delete_store("s")
        server.restart()
        with server.connect() as client:
            assert client.list_stores() == []
            assert client.create_store("s").snapshots() == []


def test_a_sigkill_while_a_snapshot_is_written_keeps_the_previous_one_whole(tmp_path):
    big = np.random.default_rng(0).standard_normal((48 << 20) // 4).astype(np.float32)
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            store = client.create_store("big")
            store.push({"w": big})
            first = store.snapshot(step=1)
            store.push({"w": big + 1})
            folder = store_folder(tmp_path / "data", "big") / "data"
            writing = threading.Thread(target=_snapshot_ignoring_the_crash, args=(store,))
            writing.start()
            partial = _wait_for(lambda: list(folder.glob(".*.tmp")))
            server.kill()
            writing.join()
        assert partial, "the snapshot finished before a temporary file was seen"
        server.start()
        with server.connect() as client:
            store = client.store("big")
            snapshots = store.snapshots()
            assert snapshots[0].id == first.id
            assert list(folder.glob(".*.tmp")) == []  # the partial file is gone, never listed
            if len(snapshots) == 1:  # killed before the rename: the store is the first snapshot
                np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), big)
            for info in snapshots:  # whatever is listed is whole
                store.restore(info.id)
            store.restore(first.id)
            np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), big)


def _snapshot_ignoring_the_crash(store):
    try:
        store.snapshot(step=2)
    except ParamstoreError:
        pass  # the server died under the call, as intended


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.0005)
    return None


def test_a_damaged_latest_snapshot_is_skipped_when_the_server_restarts(tmp_path):
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            store = client.create_store("s")
            store.push({"w": np.zeros(1000, np.float32)})
            store.snapshot(step=1)
            store.push({"w": np.ones(1000, np.float32)})
            latest = store.snapshot(step=2)
        path = snapshot_path(tmp_path / "data", "s", latest.id)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        server.restart()
        with server.connect() as client:
            store = client.store("s")
            np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), 0)
            with pytest.raises(InvalidArgument, match="damaged"):
                store.restore(latest.id)


def test_sigterm_lets_a_push_in_flight_finish_then_exits_cleanly(tmp_path):
    with running_server(tmp_path / "data") as server:
        with server.connect() as client:
            client.create_store("s")
        halfway, finish = threading.Event(), threading.Event()
        replies = []
        with grpc.insecure_channel(server.address) as channel:
            push = channel.stream_unary("/paramstore.v1.ParamStore/Push",
                                        request_serializer=pb.PushRequest.SerializeToString,
                                        response_deserializer=pb.PushResponse.FromString)
            caller = threading.Thread(
                target=lambda: replies.append(push(_slow_push(halfway, finish), timeout=30))
            )
            caller.start()
            assert halfway.wait(10)
            time.sleep(0.2)  # the server is now reading the stream
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            finish.set()
            caller.join()
        assert replies and replies[0].version > 0
        assert server.process.wait(timeout=30) == 0


def _slow_push(halfway, finish):
    """A push of one 4-chunk tensor that pauses after its second chunk until `finish`."""
    yield pb.PushRequest(begin=pb.PushBegin(store="s", parameter_count=1))
    yield pb.PushRequest(parameter=pb.ParameterSpec(
        name="w", shape=[4, 1 << 18], dtype="float32", dtype_label="float32",
        kind="Parameter", has_data=True))
    chunk = np.ones(1 << 18, np.float32).tobytes()
    for index in range(4):
        if index == 2:
            halfway.set()
            finish.wait(10)
        yield pb.PushRequest(chunk=chunk)


# ---- bad names and regexes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "a/b", "..", "../up", "nul\x00byte", "x" * 300, "back\\slash"]
)
def test_a_bad_store_name_is_refused_and_creates_nothing(remote, name):
    with pytest.raises(InvalidArgument):
        remote.create_store(name)
    assert remote.list_stores() == []


@pytest.mark.parametrize("name", ["", "__metadata__", "line\nbreak", "tab\there", "y" * 5000])
def test_a_bad_parameter_name_refuses_the_whole_push(mlp_store, name):
    before = state_of(mlp_store)
    with pytest.raises(InvalidArgument):
        mlp_store.push({"dense0_bias": np.ones(256, np.float32), name: np.ones(2, np.float32)})
    assert_same_state(before, state_of(mlp_store))


@pytest.mark.parametrize("select", ["dense(", "[a-", "*weight", "a{2,1}", "(?<"])
def test_a_bad_regex_is_refused_with_invalid_argument(mlp_store, select):
    with pytest.raises(InvalidArgument):
        mlp_store.collect_params(select)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(select=st.text(alphabet="().*+?[]{}|\\^$ad0_,-", max_size=12))
def test_any_select_gives_a_listing_or_invalid_argument(mlp_store, select):
    try:
        listing = mlp_store.collect_params(select)
    except InvalidArgument:
        return
    assert set(listing) <= {"dense0_weight", "dense0_bias", "dense1_weight", "dense1_bias"}


def test_a_regex_that_backtracks_exponentially_elsewhere_answers(mlp_store):
    mlp_store.push({"a" * 1000: np.ones(1, np.float32)})
    assert list(mlp_store.collect_params("(a+)+b")) == []
    assert list(mlp_store.collect_params("(a|aa)+$")) == ["a" * 1000]


def test_reserved_snapshot_metadata_is_refused_and_writes_no_snapshot(mlp_store):
    with pytest.raises(InvalidArgument, match="paramstore"):
        mlp_store.snapshot(metadata={"paramstore.step": "5"})
    assert mlp_store.snapshots() == []


@pytest.mark.parametrize("step", [-5, 2**63])
def test_a_step_outside_zero_to_int64_is_refused_and_writes_no_snapshot(mlp_store, step):
    with pytest.raises(InvalidArgument, match="step"):
        mlp_store.snapshot(step=step)
    assert mlp_store.snapshots() == []


# ---- tokens ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("guarded") / "data", token="s3cret") as server:
        with server.connect() as client:
            store = client.create_store("mlp")
            store.push(mlp().collect_params())
            store.snapshot(step=1)
        yield server


BIAS = np.ones(256, np.float32)
CALLS_NEEDING_A_TOKEN = {
    "ListStores": lambda client, tmp: client.list_stores(),
    "CreateStore": lambda client, tmp: client.create_store("intruder"),
    "GetStore": lambda client, tmp: client.store("mlp"),
    "DeleteStore": lambda client, tmp: client.delete_store("mlp"),
    "CollectParams": lambda client, tmp: client_store(client).collect_params(),
    "Push": lambda client, tmp: client_store(client).push({"dense0_bias": BIAS}),
    "Pull": lambda client, tmp: client_store(client).pull({"dense0_bias": BIAS.copy()}),
    "SetData": lambda client, tmp: client_store(client).set_data("dense0_bias", BIAS),
    "Initialize": lambda client, tmp: client_store(client).initialize("zeros", force_reinit=True),
    "Tie": lambda client, tmp: client_store(client).tie("dense1_bias", "dense0_bias"),
    "Untie": lambda client, tmp: client_store(client).untie("dense1_bias"),
    "ListTies": lambda client, tmp: client_store(client).ties(),
    "TakeSnapshot": lambda client, tmp: client_store(client).snapshot(),
    "ListSnapshots": lambda client, tmp: client_store(client).snapshots(),
    "RestoreSnapshot": lambda client, tmp: client_store(client).restore("00000001"),
    "DeleteSnapshot": lambda client, tmp: client_store(client).delete_snapshot("00000001"),
    "ExportSnapshot": lambda client, tmp: client_store(client).export_snapshot(
        "00000001", tmp / "out.safetensors"),
    "ImportSnapshot": lambda client, tmp: client.import_snapshot(
        _write(tmp / "in.safetensors", checkpoint.dumps({"w": np.ones(3, np.float32)})), "x"),
}


def client_store(client):
    """The store without the GetStore check, so that each call is the one under test."""
    from paramstore.client import RemoteStore

    return RemoteStore(client, "mlp")


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("token", [None, "wrong", "s3cret "])
@pytest.mark.parametrize("call", CALLS_NEEDING_A_TOKEN)
def test_a_missing_or_wrong_token_is_refused_and_changes_nothing(guarded, tmp_path, call, token):
    with guarded.connect() as owner:
        before, snapshots = state_of(owner.store("mlp")), owner.store("mlp").snapshots()
    with guarded.connect(token=token) as intruder, pytest.raises(Unauthenticated):
        CALLS_NEEDING_A_TOKEN[call](intruder, tmp_path)
    with guarded.connect() as owner:
        assert owner.list_stores() == ["mlp"]
        assert_same_state(before, state_of(owner.store("mlp")))
        assert owner.store("mlp").snapshots() == snapshots
    assert not (tmp_path / "out.safetensors").exists()


# ---- malformed imports -------------------------------------------------------------------------


def safetensors_bytes(header, body=b""):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def f32(shape, begin, end):
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def flipped_data_byte():
    data = bytearray(checkpoint.dumps({"w": np.ones(100, np.float32)}))
    data[-3] ^= 0x01
    return bytes(data)


MALFORMED_FILES = {
    "empty": b"",
    "shorter than the length prefix": b"\x05\x00\x00",
    "header length past the end": struct.pack("<Q", 1 << 40) + b"{}",
    "header is not JSON": struct.pack("<Q", 5) + b"{nope",
    "header is a list": struct.pack("<Q", 2) + b"[]",
    "unknown dtype": safetensors_bytes({"w": {"dtype": "F128", "shape": [1],
                                              "data_offsets": [0, 16]}}, bytes(16)),
    "offsets past the data": safetensors_bytes({"w": f32([4], 0, 16)}, bytes(8)),
    "shape disagrees with offsets": safetensors_bytes({"w": f32([3], 0, 16)}, bytes(16)),
    "overlapping tensors": safetensors_bytes({"a": f32([4], 0, 16), "b": f32([4], 8, 24)},
                                             bytes(24)),
    "negative dimension": safetensors_bytes({"w": f32([-4], 0, 16)}, bytes(16)),
    "trailing bytes": safetensors_bytes({"w": f32([4], 0, 16)}, bytes(20)),
    "duplicate names": struct.pack("<Q", 79) + (
        b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}') + bytes(4),
    "non-string metadata": safetensors_bytes({"__metadata__": {"k": 1}, "w": f32([1], 0, 4)},
                                             bytes(4)),
    "alias to a missing tensor": safetensors_bytes(
        {"__metadata__": {"paramstore.aliases": '{"x": "ghost"}'}, "w": f32([1], 0, 4)},
        bytes(4)),
    "order missing a name": safetensors_bytes(
        {"__metadata__": {"paramstore.order": '["w"]'}, "w": f32([1], 0, 4),
         "v": f32([1], 4, 8)}, bytes(8)),
    "checksum mismatch": flipped_data_byte(),
    "path in a tensor name": safetensors_bytes({"bad\x00name": f32([1], 0, 4)}, bytes(4)),
}


@pytest.mark.parametrize("defect", MALFORMED_FILES)
def test_a_malformed_import_is_refused_and_changes_nothing(remote, mlp_store, tmp_path, defect):
    before = state_of(mlp_store)
    path = _write(tmp_path / "bad.safetensors", MALFORMED_FILES[defect])
    with pytest.raises(InvalidArgument):
        remote.import_snapshot(path, store="imported")
    assert remote.list_stores() == ["mlp"]
    assert_same_state(before, state_of(mlp_store))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), xor=st.integers(1, 255))
def test_a_corrupted_snapshot_byte_is_refused_or_harmless(remote, tmp_path, position, xor):
    original = {"w": np.arange(64, dtype=np.float32), "b": np.ones(3, np.int64)}
    data = bytearray(checkpoint.dumps(original, metadata={"note": "n"}))
    data[position % len(data)] ^= xor
    path = _write(tmp_path / "corrupt.safetensors", bytes(data))
    try:
        remote.import_snapshot(path, store="corrupt")
    except InvalidArgument:
        assert "corrupt" not in remote.list_stores()
        return
    store = remote.store("corrupt")  # the flip hit something harmless: the data is intact
    local = {name: np.zeros_like(array) for name, array in original.items()}
    store.pull(local)
    for name, array in original.items():
        np.testing.assert_array_equal(local[name], array)
    remote.delete_store("corrupt")


# ---- shape and dtype mismatches ----------------------------------------------------------------


@pytest.mark.parametrize("value", [
    np.ones((256, 21), np.float32),  # another shape
    np.ones((256, 20), np.float64),  # another dtype
    np.ones((256, 20), np.int32),
    np.ones(256 * 20, np.float32),  # the same size, flattened
])
def test_a_push_that_disagrees_with_the_store_is_refused_whole(mlp_store, value):
    before = state_of(mlp_store)
    with pytest.raises(FailedPrecondition, match="dense0_weight"):
        mlp_store.push({"dense1_bias": np.ones(10, np.float32), "dense0_weight": value,
                        "new_weight": np.ones(3, np.float32)})
    assert_same_state(before, state_of(mlp_store))


@pytest.mark.parametrize("value", [np.ones(11, np.float32), np.ones(10, np.float16),
                                   np.ones((10, 1), np.float32)])
def test_set_data_that_disagrees_with_the_parameter_is_refused(mlp_store, value):
    before = state_of(mlp_store)
    with pytest.raises(FailedPrecondition):
        mlp_store.collect_params()["dense1_bias"].set_data(value)
    assert_same_state(before, state_of(mlp_store))


def test_set_data_through_an_alias_checks_the_targets_shape(mlp_store):
    mlp_store.push({"out_bias": np.zeros(10, np.float32)})
    mlp_store.tie("out_bias", "dense1_bias")
    before = state_of(mlp_store)
    with pytest.raises(FailedPrecondition):
        mlp_store.collect_params()["out_bias"].set_data(np.ones(256, np.float32))
    assert_same_state(before, state_of(mlp_store))


def test_tying_parameters_of_different_shapes_is_refused(mlp_store):
    before = state_of(mlp_store)
    with pytest.raises(FailedPrecondition):
        mlp_store.tie("dense0_bias", "dense1_bias")
    assert_same_state(before, state_of(mlp_store))


def test_set_data_of_a_missing_parameter_raises_parameter_not_found(mlp_store):
    with pytest.raises(ParameterNotFound, match="ghost"):
        mlp_store.set_data("ghost", np.ones(3, np.float32))


def test_calls_on_a_deleted_store_raise_store_not_found(remote, mlp_store):
    remote.delete_store("mlp")
    with pytest.raises(StoreNotFound):
        mlp_store.collect_params()
    with pytest.raises(StoreNotFound):
        mlp_store.push({"w": np.ones(1, np.float32)})


@pytest.mark.parametrize("local", [np.zeros((2, 10), np.float32), np.zeros(5, np.float32)],
                         ids=["broadcastable", "smaller"])
def test_pulling_into_an_array_of_another_shape_raises_and_fills_nothing(mlp_store, local):
    bias = np.zeros(256, np.float32) + 4
    params = {"dense0_bias": bias, "dense1_bias": local}
    with pytest.raises(FailedPrecondition, match="dense1_bias"):
        mlp_store.pull(params)
    np.testing.assert_array_equal(bias, 4)
    np.testing.assert_array_equal(local, 0)


def test_pulling_into_a_parameter_of_another_shape_raises_a_paramstore_error(mlp_store):
    from paramstore import gluon

    wrong = gluon.Parameter("dense1_bias", shape=(11,))
    wrong.initialize()
    with pytest.raises(FailedPrecondition, match="dense1_bias"):
        mlp_store.pull({"dense1_bias": wrong})
