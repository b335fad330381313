"""Big tensors and big stores through a `paramstore serve` process: nothing assumes a tensor
fits in one gRPC message, nor a listing in one page."""

import numpy as np
import pytest
import safetensors.numpy

pytest_plugins = ("server_fixtures",)  # `served`, `remote`

MIB = 1 << 20


@pytest.fixture(scope="module")
def big():
    """64 MiB of float32 with no repeating pattern, so that a misplaced chunk shows."""
    return np.random.default_rng(64).standard_normal((4096, 4096)).astype(np.float32)


def test_a_64_mib_tensor_round_trips_exactly(remote, big):
    assert big.nbytes == 64 * MIB
    store = remote.create_store("big")
    store.push({"embedding_weight": big, "bias": np.ones(7, np.float32)})
    local = {"embedding_weight": np.zeros_like(big), "bias": np.zeros(7, np.float32)}
    store.pull(local)
    np.testing.assert_array_equal(local["embedding_weight"], big)
    np.testing.assert_array_equal(local["bias"], 1)


def test_a_64_mib_tensor_reads_back_through_its_remote_parameter(remote, big):
    store = remote.create_store("big")
    store.push({"embedding_weight": big})
    parameter = store.collect_params()["embedding_weight"]
    assert parameter.shape == (4096, 4096)
    np.testing.assert_array_equal(parameter.data().asnumpy(), big)


def test_a_64_mib_tensor_survives_snapshot_export_and_import(remote, big, tmp_path):
    store = remote.create_store("big")
    store.push({"embedding_weight": big})
    snapshot = store.snapshot(step=3)
    store.export_snapshot(snapshot.id, tmp_path / "big.safetensors")
    np.testing.assert_array_equal(
        safetensors.numpy.load_file(tmp_path / "big.safetensors")["embedding_weight"], big
    )
    remote.import_snapshot(tmp_path / "big.safetensors", store="copy")
    local = {"embedding_weight": np.zeros_like(big)}
    remote.store("copy").pull(local)
    np.testing.assert_array_equal(local["embedding_weight"], big)


def test_a_64_mib_set_data_through_a_tie_is_seen_by_the_target(remote, big):
    store = remote.create_store("tied")
    store.push({"encoder": np.zeros_like(big), "decoder": np.zeros_like(big)})
    store.tie("decoder", "encoder")
    store.set_data("decoder", big)
    local = {"encoder": np.zeros_like(big)}
    store.pull(local)
    np.testing.assert_array_equal(local["encoder"], big)


def test_a_listing_of_ten_thousand_parameters_arrives_whole_and_in_order(remote):
    names = [f"block{index // 100}_dense{index % 100}_weight" for index in range(10_000)]
    store = remote.create_store("many")
    store.push({name: np.full(2, index, np.float32) for index, name in enumerate(names)})
    listing = store.collect_params()
    assert list(listing) == names
    assert list(store.collect_params("block99_.*")) == names[-100:]
    local = {name: np.zeros(2, np.float32) for name in names[::997]}
    store.pull(local)
    assert [int(array[0]) for array in local.values()] == list(range(0, 10_000, 997))


def test_a_pull_whose_names_outgrow_one_grpc_message_works(remote):
    # 4,300 names of 1,000 characters (the limit is 1,024): 4.3 MB of names, more than
    # gRPC's default 4 MiB message.
    names = [f"{index:05d}_" + "w" * 994 for index in range(4300)]
    store = remote.create_store("long-names")
    store.push({name: np.full(1, index, np.float32) for index, name in enumerate(names)})
    local = {name: np.zeros(1, np.float32) for name in names}
    store.pull(local)
    assert [int(array[0]) for array in local.values()] == list(range(4300))
