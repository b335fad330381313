"""The chapter's networks through a real `paramstore serve` process: listings print exactly like
local ones, initializers run on the server, ties keep one tensor under two names."""

import numpy as np
import pytest
from chapter_nets import CHAPTER_NETS, by_path, mlp, tied_net

from paramstore import gluon, init, nd
from paramstore.client.errors import FailedPrecondition, InvalidArgument, ParameterNotFound
from paramstore.gluon import nn

pytest_plugins = ("server_fixtures",)  # `served`, `remote`, `mlp_store`


def values(store, name):
    return store.collect_params()[name].data().asnumpy()


# ---- collect_params over the wire --------------------------------------------------------------


@pytest.mark.parametrize("kind", CHAPTER_NETS)
def test_a_pushed_net_prints_like_its_local_collect_params(remote, kind):
    net = CHAPTER_NETS[kind]()
    store = remote.create_store(kind)
    store.push(net.collect_params())
    assert str(store.collect_params()) == str(net.collect_params())


@pytest.mark.parametrize("select", [".*weight", "dense0.*", ".*_bias", "nothing", "dense[0-9]+_w"])
def test_a_remote_selection_prints_like_the_local_one(remote, select):
    net = CHAPTER_NETS["rgnet"]()
    store = remote.create_store("rgnet")
    store.push(net.collect_params())
    assert str(store.collect_params(select)) == str(net.collect_params(select))


def pushed_before_its_first_forward(remote):
    """The chapter's MLP, initialized but never run, pushed: its input dimension unknown."""
    net = nn.Sequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(10))
    net.initialize()
    store = remote.create_store("deferred")
    store.push(net.collect_params())
    return net, store


def test_a_net_before_its_first_forward_prints_its_unknown_dimensions(remote):
    net, store = pushed_before_its_first_forward(remote)
    assert "shape=(256, 0)" in str(store.collect_params())
    assert str(store.collect_params()) == str(net.collect_params())


def test_data_of_a_parameter_of_unknown_shape_says_to_run_the_net_forward(remote):
    net, store = pushed_before_its_first_forward(remote)
    store.initialize(init.Xavier())  # nothing to fill: no shape is known yet
    with pytest.raises(FailedPrecondition,
                       match=r"shape \(256, 0\) is not known yet; run the net forward once"):
        store.collect_params()[net[0].weight.name].data()
    net(nd.ones((2, 20)))
    store.push(net.collect_params())
    assert store.collect_params()[net[0].weight.name].data().shape == (256, 20)


def test_a_remote_listing_indexes_like_a_parameter_dict(remote):
    net = mlp()
    store = remote.create_store("mlp")
    store.push(net.collect_params())
    local, listing = net.collect_params(), store.collect_params()
    assert repr(listing.keys()) == repr(local.keys())  # odict_keys([...]), as in Gluon
    assert len(listing) == len(list(local.keys()))
    for name, parameter in listing.items():
        assert (parameter.name, parameter.shape, parameter.dtype) == (
            local[name].name, local[name].shape, local[name].dtype
        )
        np.testing.assert_array_equal(parameter.data().asnumpy(), local[name].data().asnumpy())


def test_a_net_pulled_from_the_store_computes_what_the_pushed_net_computes(remote):
    trained, fresh = mlp(), mlp()
    store = remote.create_store("mlp")
    store.push(trained.collect_params())
    x = nd.random.uniform(shape=(4, 20))
    assert not np.array_equal(fresh(x).asnumpy(), trained(x).asnumpy())
    store.pull(fresh.collect_params())
    np.testing.assert_array_equal(fresh(x).asnumpy(), trained(x).asnumpy())


def test_pull_fills_a_nets_parameters_in_place(remote):
    net = mlp()
    store = remote.create_store("mlp")
    store.push(net.collect_params())
    store.collect_params()["dense1_bias"].set_data(nd.ones((10,)) * 7)
    bias = net[1].bias.data()
    store.pull(net.collect_params())
    np.testing.assert_array_equal(net[1].bias.data().asnumpy(), 7.0)
    assert bias.shape == (10,)


# ---- initializers on the server ----------------------------------------------------------------


def test_xavier_on_the_server_redraws_only_the_selected_weights(mlp_store):
    biases = values(mlp_store, "dense0_bias")
    before = values(mlp_store, "dense0_weight")
    initialized = mlp_store.initialize(init.Xavier(), select=".*weight", force_reinit=True)
    assert initialized == ["dense0_weight", "dense1_weight"]
    after = values(mlp_store, "dense0_weight")
    bound = np.sqrt(3.0 / ((256 + 20) / 2))  # Xavier(uniform, avg, magnitude 3)
    assert not np.array_equal(after, before)
    assert np.abs(after).max() <= bound and np.abs(after).max() > 0.9 * bound
    np.testing.assert_array_equal(values(mlp_store, "dense0_bias"), biases)


def test_normal_on_the_server_draws_with_the_requested_sigma(mlp_store):
    mlp_store.initialize(init.Normal(0.5), select="dense0_weight", force_reinit=True)
    drawn = values(mlp_store, "dense0_weight")
    assert abs(drawn.std() - 0.5) < 0.05 and abs(drawn.mean()) < 0.05


def test_constant_on_the_server_fills_every_selected_parameter(mlp_store):
    mlp_store.initialize(init.Constant(1), select=".*bias", force_reinit=True)
    np.testing.assert_array_equal(values(mlp_store, "dense0_bias"), np.ones(256))
    np.testing.assert_array_equal(values(mlp_store, "dense1_bias"), np.ones(10))


def test_an_initializer_without_force_reinit_keeps_existing_data(mlp_store):
    before = values(mlp_store, "dense0_weight")
    assert mlp_store.initialize(init.One(), select=".*weight") == []
    np.testing.assert_array_equal(values(mlp_store, "dense0_weight"), before)


def test_an_initializer_fills_a_declared_parameter_that_holds_no_data(remote):
    store = remote.create_store("declared")
    store.push({"extra_weight": gluon.Parameter("extra_weight", shape=(3, 4))})
    assert store.initialize(init.One()) == ["extra_weight"]
    np.testing.assert_array_equal(values(store, "extra_weight"), np.ones((3, 4)))


def test_a_bad_select_regex_for_initialize_raises_and_changes_nothing(mlp_store):
    before = mlp_store.info().version
    with pytest.raises(InvalidArgument, match="regex"):
        mlp_store.initialize(init.Zero(), select="dense(", force_reinit=True)
    assert mlp_store.info().version == before


def test_an_unregistered_initializer_is_refused_and_changes_nothing(mlp_store):
    class Halves(init.Initializer):
        def _init_weight(self, name, arr):
            arr[:] = 0.5

    before = values(mlp_store, "dense1_weight")
    with pytest.raises(InvalidArgument, match="(?i)supported"):
        mlp_store.initialize(Halves(), force_reinit=True)
    np.testing.assert_array_equal(values(mlp_store, "dense1_weight"), before)


# ---- ties --------------------------------------------------------------------------------------


@pytest.fixture
def tied_store(remote):
    """The chapter's tied net pushed by structural path: its 2nd and 3rd layers share one
    Parameter object, which the push sends once and records as a tie."""
    net = tied_net()
    store = remote.create_store("tied")
    store.push(by_path(net))
    return store


def test_a_shared_parameter_is_pushed_once_as_a_tie(tied_store):
    assert tied_store.ties() == {"2.weight": "1.weight", "2.bias": "1.bias"}
    info = tied_store.info()
    assert info.data_bytes == 4 * (8 * 20 + 8 + 8 * 8 + 8 + 10 * 8 + 10)


@pytest.mark.parametrize("written, read", [("2.weight", "1.weight"), ("1.weight", "2.weight")])
def test_a_write_through_either_tied_name_is_seen_through_both(tied_store, written, read):
    tied_store.collect_params()[written].set_data(np.full((8, 8), 100, np.float32))
    np.testing.assert_array_equal(values(tied_store, read), 100)


@pytest.mark.parametrize("written, read", [("2.weight", "1.weight"), ("1.weight", "2.weight")])
def test_a_restored_tie_is_still_one_tensor(tied_store, written, read):
    snapshot = tied_store.snapshot(step=1)
    tied_store.untie("2.weight")
    tied_store.restore(snapshot.id)
    assert tied_store.ties() == {"2.weight": "1.weight", "2.bias": "1.bias"}
    tied_store.collect_params()[written].set_data(np.full((8, 8), -3, np.float32))
    np.testing.assert_array_equal(values(tied_store, read), -3)


def test_a_tie_made_on_the_server_shares_the_target_tensor(mlp_store):
    mlp_store.push({"decoder_weight": np.zeros((10, 256), np.float32)})
    mlp_store.tie("decoder_weight", "dense1_weight")
    np.testing.assert_array_equal(values(mlp_store, "decoder_weight"),
                                  values(mlp_store, "dense1_weight"))
    mlp_store.collect_params()["dense1_weight"].set_data(np.ones((10, 256), np.float32))
    np.testing.assert_array_equal(values(mlp_store, "decoder_weight"), 1)


def test_tying_to_a_missing_target_raises_parameter_not_found(mlp_store):
    with pytest.raises(ParameterNotFound, match="ghost"):
        mlp_store.tie("dense1_weight", "ghost")
    assert mlp_store.ties() == {}


def test_pulling_a_tie_into_a_tied_net_keeps_it_tied(tied_store):
    net = tied_net()
    tied_store.collect_params()["1.weight"].set_data(np.full((8, 8), 5, np.float32))
    tied_store.pull({"1.weight": net[1].weight, "2.weight": net[2].weight})
    assert net[1].weight is net[2].weight
    np.testing.assert_array_equal(net[2].weight.data().asnumpy(), 5)


def test_a_tie_survives_export_and_import_into_a_new_store(remote, tied_store, tmp_path):
    tied_store.export_snapshot(tied_store.snapshot().id, tmp_path / "tied.safetensors")
    copy = remote.import_snapshot(tmp_path / "tied.safetensors", store="copy")
    store = remote.store(copy.store)
    assert store.ties() == tied_store.ties()
    store.collect_params()["2.bias"].set_data(np.full(8, 4, np.float32))
    np.testing.assert_array_equal(values(store, "1.bias"), 4)


# ---- listings beyond the chapter ---------------------------------------------------------------


@pytest.fixture
def mixed_dict():
    """A ParameterDict of every kind of entry its listing prints differently."""
    params = gluon.ParameterDict("model_")
    params.get("weight", shape=(2, 3))  # dtype given as numpy.float32: printed as a class
    params.get("half", shape=(4,), dtype="float16")
    params.get("count", shape=(4,), dtype=np.int32)
    params.get("deferred", shape=(2, 0))
    params.get_constant("scale", nd.array([1, 2, 3]))
    params.get("unknown")
    return params


def test_a_dict_of_mixed_dtypes_constants_and_unknown_shapes_prints_like_local(remote, mixed_dict):
    store = remote.create_store("mixed")
    store.push(mixed_dict)
    assert str(store.collect_params()) == str(mixed_dict)
    assert store.collect_params()["model_count"].dtype is np.int32


def test_a_restored_listing_still_prints_like_local(remote, mixed_dict):
    store = remote.create_store("mixed")
    store.push(mixed_dict)
    snapshot = store.snapshot()
    store.push({"model_late": np.ones(2, np.float32)})
    store.restore(snapshot.id)
    assert str(store.collect_params()) == str(mixed_dict)
