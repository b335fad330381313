"""The domain layer without gRPC: stores, ties, validation, initializers, snapshots, recovery."""

import json
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from storage_files import files_of, optimizer_path, snapshot_path, store_folder

from paramstore import checkpoint
from paramstore import optimizer as opt
from paramstore.server import validation
from paramstore.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
    ResourceExhausted,
    SnapshotNotFound,
    StoreNotFound,
)
from paramstore.server.registry import StoreRegistry
from paramstore.server.stores import Incoming, ParameterInfo, Store


def param(name, array=None, *, shape=None, dtype="float32", label=None, alias_of=None):
    if array is not None:
        shape, dtype = array.shape, array.dtype.name
    info = ParameterInfo(name, shape, dtype, label or dtype, alias_of=alias_of)
    return Incoming(info, array)


def mlp_items():
    return [
        param("dense0_weight", np.ones((4, 3), np.float32)),
        param("dense0_bias", np.zeros(4, np.float32)),
        param("dense1_weight", np.full((2, 4), 2.0, np.float32)),
    ]


@pytest.fixture
def store():
    created = Store("mlp")
    created.push("mlp_", mlp_items())
    return created


@pytest.fixture
def registry(tmp_path):
    return StoreRegistry(tmp_path / "data")


# ---- stores ------------------------------------------------------------------------------------


def test_push_keeps_insertion_order_and_prefix(store):
    assert list(store.state().parameters) == ["dense0_weight", "dense0_bias", "dense1_weight"]
    assert store.state().prefix == "mlp_"


def test_every_write_changes_the_version(store):
    before = store.state().version
    store.push("mlp_", [param("dense0_bias", np.ones(4, np.float32))])
    assert store.state().version > before


def test_a_push_overwrites_existing_data_and_appends_new_names(store):
    store.push("mlp_", [param("dense0_bias", np.ones(4, np.float32)),
                        param("out", np.ones(1, np.float32))])
    state = store.state()
    assert list(state.parameters)[-1] == "out"
    np.testing.assert_array_equal(state.array("dense0_bias"), np.ones(4))


def test_a_shape_mismatch_fails_and_changes_nothing(store):
    before = store.state()
    with pytest.raises(FailedPrecondition, match="dense0_bias"):
        store.push("mlp_", [param("new", np.ones(1, np.float32)),
                            param("dense0_bias", np.ones(5, np.float32))])
    assert store.state() is before


def test_a_dtype_change_under_existing_data_is_refused(store):
    with pytest.raises(FailedPrecondition, match="float32"):
        store.push("mlp_", [param("dense0_bias", np.ones(4, np.float64))])


def test_a_deferred_shape_is_completed_by_a_later_push():
    store = Store("s")
    store.push("", [param("w", shape=(8, 0))])
    store.push("", [param("w", np.ones((8, 3), np.float32))])
    assert store.state().info("w").shape == (8, 3)


def test_duplicate_names_in_one_push_are_refused(store):
    with pytest.raises(InvalidArgument, match="twice"):
        store.push("", [param("a", np.ones(1, np.float32)), param("a", np.ones(1, np.float32))])


def test_stored_arrays_are_read_only(store):
    with pytest.raises(ValueError):
        store.state().array("dense0_weight")[0, 0] = 5


def test_a_reader_keeps_its_state_while_a_writer_replaces_it(store):
    seen = store.state()
    store.push("mlp_", [param("dense0_bias", np.full(4, 7.0, np.float32))])
    np.testing.assert_array_equal(seen.array("dense0_bias"), np.zeros(4))


def test_concurrent_pushes_to_one_store_all_land():
    store = Store("s")

    def push(index):
        store.push("", [param(f"p{index}", np.full(3, index, np.float32))])

    threads = [threading.Thread(target=push, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(store.state().parameters) == sorted(f"p{index}" for index in range(16))


def test_an_expected_version_that_moved_refuses_the_push(store):
    with pytest.raises(FailedPrecondition, match="version"):
        store.push("mlp_", mlp_items(), expected_version=1)


# ---- ties --------------------------------------------------------------------------------------


def test_a_write_through_either_tied_name_is_seen_through_both(store):
    store.tie("dense1_weight_alias", "dense1_weight")
    store.set_data([param("dense1_weight_alias", np.full((2, 4), 5.0, np.float32))])
    np.testing.assert_array_equal(store.state().array("dense1_weight"), np.full((2, 4), 5.0))
    store.set_data([param("dense1_weight", np.full((2, 4), 6.0, np.float32))])
    np.testing.assert_array_equal(store.state().array("dense1_weight_alias"), np.full((2, 4), 6))


def test_tying_an_existing_parameter_drops_its_own_data(store):
    store.push("mlp_", [param("dense2_weight", np.zeros((4, 3), np.float32))])
    store.tie("dense2_weight", "dense0_weight")
    assert store.state().ties() == {"dense2_weight": "dense0_weight"}
    assert "dense2_weight" not in store.state().data


def test_tying_parameters_of_different_shapes_is_refused(store):
    with pytest.raises(FailedPrecondition, match="shape"):
        store.tie("dense1_weight", "dense0_weight")


def test_tying_to_a_missing_target_is_refused(store):
    with pytest.raises(ParameterNotFound, match="nowhere"):
        store.tie("x", "nowhere")


def test_a_tie_to_an_alias_points_at_the_tensor(store):
    store.tie("a", "dense0_weight")
    store.tie("b", "a")
    assert store.state().ties() == {"a": "dense0_weight", "b": "dense0_weight"}


def test_untie_gives_the_alias_its_own_tensor(store):
    store.tie("a", "dense0_weight")
    store.untie("a")
    store.set_data([param("a", np.zeros((4, 3), np.float32))])
    np.testing.assert_array_equal(store.state().array("dense0_weight"), np.ones((4, 3)))


def test_untie_of_a_name_that_is_no_alias_is_refused(store):
    with pytest.raises(ParameterNotFound):
        store.untie("dense0_weight")


def test_set_data_of_a_missing_parameter_is_refused(store):
    with pytest.raises(ParameterNotFound):
        store.set_data([param("missing", np.ones(1, np.float32))])


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "a\x00b", "x" * 129, "a b", "é"])
def test_bad_store_names_are_refused(name):
    with pytest.raises(InvalidArgument):
        validation.store_name(name)


@pytest.mark.parametrize("name", ["mlp", "run-1.v2", "A_b", "x" * 128])
def test_good_store_names_are_accepted(name):
    assert validation.store_name(name) == name


def test_select_matches_at_the_start_like_gluon():
    matches = validation.select("dense")
    assert matches("dense0_weight") and not matches("mlp_dense0_weight")


def test_an_empty_select_matches_everything():
    assert validation.select("")("anything")


@pytest.mark.parametrize("pattern", ["(", "[a-", "a{1000}{1000}", "(?<=x)y"])
def test_bad_regexes_are_refused(pattern):
    with pytest.raises(InvalidArgument, match="regex"):
        validation.select(pattern)


def test_a_catastrophic_regex_runs_in_linear_time():
    matches = validation.select("(a+)+$")
    assert not matches("a" * 50_000 + "b")


@given(st.text(max_size=40))
def test_select_never_raises_anything_but_invalid_argument(pattern):
    try:
        validation.select(pattern)("dense0_weight")
    except InvalidArgument:
        pass


def test_a_too_large_shape_is_refused_as_over_a_resource_limit():
    with pytest.raises(ResourceExhausted, match="limit"):
        validation.shape("w", [1 << 20, 1 << 20], 4, 1 << 30)


# ---- the registry and initializers -------------------------------------------------------------


def test_creating_a_store_twice_is_refused(registry):
    registry.create("mlp")
    with pytest.raises(AlreadyExists):
        registry.create("mlp")


def test_a_missing_store_is_not_found(registry):
    with pytest.raises(StoreNotFound, match="'nope'"):
        registry.get("nope")


def test_initialize_fills_the_selected_parameters(registry):
    registry.create("s").push("", [param("w", shape=(3, 4)), param("b", shape=(3,))])
    names, state = registry.initialize("s", '["constant", {"value": 2.0}]', "w",
                                       force_reinit=False)
    assert names == ["w"]
    np.testing.assert_array_equal(state.array("w"), np.full((3, 4), 2.0))
    assert state.array("b") is None


def test_initialize_skips_data_unless_forced(registry):
    registry.create("s").push("", [param("w", np.ones((2, 2), np.float32))])
    assert registry.initialize("s", '["zero", {}]', "", force_reinit=False)[0] == []
    assert registry.initialize("s", '["zero", {}]', "", force_reinit=True)[0] == ["w"]


def test_an_unregistered_initializer_names_the_supported_ones(registry):
    registry.create("s")
    with pytest.raises(InvalidArgument, match="xavier"):
        registry.initialize("s", '["myinit", {}]', "", force_reinit=False)


def test_an_initializer_that_refuses_a_parameter_changes_nothing(registry):
    store = registry.create("s")
    store.push("", [param("w", shape=(3, 4)), param("b", shape=(3,))])
    before = store.state()
    with pytest.raises(InvalidArgument, match="'b'"):
        registry.initialize("s", '["xavier", {}]', "", force_reinit=True)
    assert store.state() is before


# ---- snapshots ---------------------------------------------------------------------------------


def test_a_restored_snapshot_has_the_same_listing_data_and_ties(registry):
    store = registry.create("mlp")
    store.push("mlp_", mlp_items() + [param("later", shape=(5, 0), label="<class 'x'>")])
    store.tie("alias", "dense1_weight")
    info = registry.snapshot("mlp", step=7, metadata={"note": "x"})
    expected = store.state()
    store.push("mlp_", [param("dense0_bias", np.full(4, 9.0, np.float32))])
    restored = registry.restore("mlp", info.id)
    assert [restored.info(n) for n in restored.parameters] == \
        [expected.info(n) for n in expected.parameters]
    assert restored.ties() == {"alias": "dense1_weight"}
    np.testing.assert_array_equal(restored.array("dense0_bias"), np.zeros(4))
    assert (info.step, info.metadata) == (7, {"note": "x"})


def test_a_snapshot_stores_a_tied_tensor_once(registry, tmp_path):
    store = registry.create("mlp")
    store.push("", [param("w", np.ones((64, 64), np.float32))])
    store.tie("w2", "w")
    info = registry.snapshot("mlp")
    loaded = checkpoint.load(snapshot_path(tmp_path / "data", "mlp", info.id))
    assert list(loaded.stored()) == ["w"] and loaded.aliases == {"w2": "w"}


def test_untied_names_stay_untied_through_a_snapshot(registry):
    store = registry.create("s")
    store.push("", [param("w", np.ones(3, np.float32))])
    store.tie("v", "w")
    store.untie("v")
    restored = registry.restore("s", registry.snapshot("s").id)
    assert restored.ties() == {}


def test_reserved_metadata_keys_are_refused(registry):
    registry.create("s")
    with pytest.raises(InvalidArgument, match="reserved"):
        registry.snapshot("s", metadata={"paramstore.prefix": "x"})


def test_retention_keeps_the_newest(tmp_path):
    registry = StoreRegistry(tmp_path, keep=2)
    registry.create("s")
    ids = [registry.snapshot("s").id for _ in range(4)]
    assert [info.id for info in registry.snapshots("s")] == ids[2:]


def test_a_missing_snapshot_is_not_found(registry):
    registry.create("s")
    with pytest.raises(SnapshotNotFound):
        registry.restore("s", "00000009")


def test_a_new_registry_recovers_every_store_from_its_latest_snapshot(tmp_path):
    first = StoreRegistry(tmp_path)
    first.create("mlp").push("mlp_", mlp_items())
    first.snapshot("mlp")
    first.create("empty")
    first.get("mlp").push("mlp_", [param("dense0_bias", np.ones(4, np.float32))])
    first.snapshot("mlp")
    second = StoreRegistry(tmp_path)
    assert [store.name for store in second.list()] == ["empty", "mlp"]
    np.testing.assert_array_equal(second.get("mlp").state().array("dense0_bias"), np.ones(4))


def test_recovery_skips_a_damaged_latest_snapshot_and_temporaries(tmp_path):
    first = StoreRegistry(tmp_path)
    first.create("mlp").push("mlp_", mlp_items())
    good = first.snapshot("mlp")
    bad = first.snapshot("mlp")
    snapshot_path(tmp_path, "mlp", bad.id).write_bytes(b"\x10\x00garbage")
    partial = store_folder(tmp_path, "mlp") / "data" / ".00000003.abc.safetensors.1234.tmp"
    partial.write_bytes(b"partial")
    second = StoreRegistry(tmp_path)
    assert second.get("mlp").state().prefix == "mlp_"
    assert not partial.exists()
    assert [info.id for info in second.snapshots("mlp")] == [good.id]


def write_file(data: bytes):
    """An import's `produce`: what the servicer does with the received chunks."""
    def produce(path: str) -> None:
        with open(path, "wb") as file:
            file.write(data)
    return produce


def test_importing_bytes_creates_a_store_with_a_first_snapshot(registry):
    data = checkpoint.dumps({"a": np.ones(2, np.float32), "b": np.zeros(3, np.int64)})
    info = registry.import_snapshot("imported", write_file(data))
    state = registry.get("imported").state()
    assert list(state.parameters) == ["a", "b"] and info.id == "00000001"


def test_importing_malformed_bytes_changes_nothing(registry):
    with pytest.raises(InvalidArgument):
        registry.import_snapshot("bad", write_file(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"))
    with pytest.raises(StoreNotFound):
        registry.get("bad")


def test_importing_a_listing_that_disagrees_with_the_tensors_is_refused(registry):
    listing = json.dumps([{"name": "other"}])
    data = checkpoint.dumps({"a": np.ones(2)}, metadata={"paramstore.parameters": listing})
    with pytest.raises(InvalidArgument):
        registry.import_snapshot("bad", write_file(data))


def test_retention_and_delete_remove_the_optimizer_state_of_a_snapshot(tmp_path):
    registry = StoreRegistry(tmp_path, keep=1)
    store = registry.create("kept")
    store.push("", [param("w", np.ones(3, np.float32))])
    store.optimizer = opt.create("sgd", momentum=0.9)
    first = registry.snapshot("kept")
    assert optimizer_path(tmp_path, "kept", first.id).exists()
    second = registry.snapshot("kept")
    assert [path.name.split(".")[0] for path in files_of(tmp_path, "kept")
            if "data" in path.parts] == [second.id, second.id]  # parameters and optimizer
    registry.delete_snapshot("kept", second.id)
    assert [path.name for path in files_of(tmp_path, "kept")] == ["created"]
