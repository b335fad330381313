"""Eight clients at once against one `paramstore serve` process: every write lands whole, every
read sees one version, and stores do not interfere."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
from concurrent_clients import push_and_pull, uniform_params

pytest_plugins = ("server_fixtures",)  # `served`, `remote`

CLIENTS = 8
ROUNDS = 12


def pushed_values():
    return {client * 1000 + round_index
            for client in range(CLIENTS) for round_index in range(ROUNDS)}


def check_outcome(results, store):
    versions = [version for client_versions, _ in results for version in client_versions]
    assert len(set(versions)) == CLIENTS * ROUNDS  # every push made its own version
    assert {value for _, seen in results for value in seen} <= pushed_values()
    final = uniform_params(-1.0)
    store.pull(final)
    (value,) = np.unique(np.concatenate(list(final.values())))
    assert value in pushed_values()


def test_eight_client_threads_pushing_and_pulling_each_see_whole_pushes(served, remote):
    store = remote.create_store("shared")
    store.push(uniform_params(0.0))
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(push_and_pull, served.address, index, ROUNDS)
                   for index in range(CLIENTS)]
        results = [future.result() for future in futures]
    check_outcome(results, store)


def test_eight_client_processes_pushing_and_pulling_each_see_whole_pushes(served, remote):
    store = remote.create_store("shared")
    store.push(uniform_params(0.0))
    # Fresh interpreters: a forked child would inherit this process's gRPC state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(CLIENTS, mp_context=context) as pool:
        futures = [pool.submit(push_and_pull, served.address, index, ROUNDS)
                   for index in range(CLIENTS)]
        results = [future.result() for future in futures]
    check_outcome(results, store)


def own_store_round_trip(served, index):
    """A client working on its own store: push, snapshot, overwrite, restore, pull."""
    rng = np.random.default_rng(index)
    params = {f"p{k}": rng.standard_normal((64, 64)).astype(np.float32) for k in range(8)}
    with served.connect() as client:
        store = client.create_store(f"client{index}")
        store.push(params)
        snapshot = store.snapshot(step=index)
        store.push({name: np.zeros_like(array) for name, array in params.items()})
        store.restore(snapshot.id)
        local = {name: np.empty_like(array) for name, array in params.items()}
        store.pull(local)
    return params, local


def test_eight_clients_on_their_own_stores_never_see_each_others_data(served, remote):
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda index: own_store_round_trip(served, index),
                                range(CLIENTS)))
    for params, local in results:
        for name, array in params.items():
            np.testing.assert_array_equal(local[name], array)
    assert remote.list_stores() == sorted(f"client{index}" for index in range(CLIENTS))


def test_set_data_through_both_tied_names_at_once_keeps_one_tensor(served, remote):
    store = remote.create_store("tied")
    store.push({"encoder_weight": np.zeros((32, 32), np.float32),
                "decoder_weight": np.zeros((32, 32), np.float32)})
    store.tie("decoder_weight", "encoder_weight")

    def write(index):
        name = ("encoder_weight", "decoder_weight")[index % 2]
        with served.connect() as client:
            parameter = client.store("tied").collect_params()[name]
            for round_index in range(ROUNDS):
                parameter.set_data(np.full((32, 32), index * 1000 + round_index, np.float32))

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(write, range(CLIENTS)))
    listing = store.collect_params()
    encoder = listing["encoder_weight"].data().asnumpy()
    np.testing.assert_array_equal(listing["decoder_weight"].data().asnumpy(), encoder)
    assert len(np.unique(encoder)) == 1 and store.ties() == {"decoder_weight": "encoder_weight"}


def test_snapshots_taken_during_concurrent_pushes_each_hold_one_whole_push(served, remote):
    store = remote.create_store("shared")
    store.push(uniform_params(0.0))
    with ThreadPoolExecutor(CLIENTS) as pool:
        pushing = [pool.submit(push_and_pull, served.address, index, ROUNDS)
                   for index in range(CLIENTS - 2)]
        snapshot_ids = [store.snapshot(step=step).id for step in range(6)]
        for future in pushing:
            future.result()
    for snapshot_id in snapshot_ids:
        store.restore(snapshot_id)
        local = uniform_params(-1.0)
        store.pull(local)
        assert len(np.unique(np.concatenate(list(local.values())))) == 1, snapshot_id


def test_deleting_a_store_while_clients_push_to_it_fails_them_cleanly(served, remote):
    from paramstore.client.errors import StoreNotFound

    store = remote.create_store("doomed")
    store.push(uniform_params(0.0))

    def push_until_gone(index):
        with served.connect() as client:
            try:
                doomed = client.store("doomed")
                for round_index in range(200):
                    doomed.push(uniform_params(index * 1000 + round_index))
            except StoreNotFound:
                return "gone"
        return "finished"

    with ThreadPoolExecutor(4) as pool:
        outcomes = [pool.submit(push_until_gone, index) for index in range(4)]
        remote.delete_store("doomed")
        assert {outcome.result() for outcome in outcomes} <= {"gone", "finished"}
    assert "doomed" not in remote.list_stores()
