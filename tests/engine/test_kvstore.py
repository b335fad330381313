"""The in-process KVStore: init, push, pull and store-side optimizer updates."""

import pytest

from paramstore import kvstore, nd, optimizer


def test_create_local_is_one_worker_of_rank_zero():
    kv = kvstore.create("local")
    assert (kv.type, kv.rank, kv.num_workers) == ("local", 0, 1)


def test_create_refuses_a_distributed_type():
    with pytest.raises(ValueError, match="Unknown KVStore type 'dist_sync'"):
        kvstore.create("dist_sync")


def test_pull_copies_the_initial_value_out():
    kv = kvstore.create()
    kv.init("w", nd.array([1.0, 2.0]))
    out = nd.zeros(2)
    kv.pull("w", out=out)
    assert out.asnumpy().tolist() == [1.0, 2.0]


def test_a_second_init_of_a_key_keeps_the_first_value():
    kv = kvstore.create()
    kv.init("w", nd.array([1.0]))
    kv.init("w", nd.array([5.0]))
    out = nd.zeros(1)
    kv.pull("w", out=out)
    assert out.asnumpy().tolist() == [1.0]


def test_init_copies_the_value():
    kv = kvstore.create()
    value = nd.array([1.0])
    kv.init(0, value)
    value[:] = 7
    out = nd.zeros(1)
    kv.pull(0, out=out)
    assert out.asnumpy().tolist() == [1.0]


def test_push_without_optimizer_stores_the_sum_of_the_pushed_arrays():
    kv = kvstore.create()
    kv.init(3, nd.zeros(2))
    kv.push(3, [nd.array([1.0, 2.0]), nd.array([10.0, 20.0])])
    out = nd.zeros(2)
    kv.pull(3, out=out)
    assert out.asnumpy().tolist() == [11.0, 22.0]


def test_push_with_an_optimizer_updates_the_stored_weight():
    kv = kvstore.create()
    kv.init("w", nd.array([1.0, 1.0]))
    kv.set_optimizer(optimizer.create("sgd", learning_rate=0.5))
    kv.push("w", nd.array([2.0, -2.0]))
    out = nd.zeros(2)
    kv.pull("w", out=out)
    assert out.asnumpy().tolist() == [0.0, 2.0]


def test_pushpull_fills_out_with_the_new_value():
    kv = kvstore.create()
    kv.init(["a", "b"], [nd.zeros(1), nd.zeros(1)])
    outs = [nd.zeros(1), nd.zeros(1)]
    kv.pushpull(["a", "b"], [nd.array([1.0]), nd.array([2.0])], out=outs)
    assert [o.asnumpy().tolist() for o in outs] == [[1.0], [2.0]]


def test_the_store_keeps_its_own_copy_of_the_optimizer():
    kv = kvstore.create()
    kv.init("w", nd.zeros(1))
    sgd = optimizer.create("sgd", learning_rate=1.0)
    kv.set_optimizer(sgd)
    sgd.set_learning_rate(100.0)
    kv.push("w", nd.array([1.0]))
    out = nd.zeros(1)
    kv.pull("w", out=out)
    assert out.asnumpy().tolist() == [-1.0]


def test_sending_the_optimizer_again_keeps_its_momentum():
    kv = kvstore.create()
    kv.init("w", nd.zeros(1))
    kv.set_optimizer(optimizer.create("sgd", learning_rate=1.0, momentum=0.9))
    kv.push("w", nd.array([1.0]))
    kv.set_optimizer(optimizer.create("sgd", learning_rate=1.0, momentum=0.9))
    kv.push("w", nd.array([1.0]))
    out = nd.zeros(1)
    kv.pull("w", out=out)
    assert out.asnumpy().tolist() == pytest.approx([-2.9])


def test_pull_of_a_key_never_initialized_fails():
    with pytest.raises(KeyError, match="key 'nope' has not been initialized"):
        kvstore.create().pull("nope", out=nd.zeros(1))


def test_push_of_a_wrong_shape_fails_and_changes_nothing():
    kv = kvstore.create()
    kv.init("w", nd.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"pushed shape \(3,\) for key 'w' of shape \(2,\)"):
        kv.push("w", nd.zeros(3))
    out = nd.zeros(2)
    kv.pull("w", out=out)
    assert out.asnumpy().tolist() == [1.0, 2.0]


def test_optimizer_states_round_trip_through_a_file(tmp_path):
    kv = kvstore.create()
    kv.init("w", nd.zeros(1))
    kv.set_optimizer(optimizer.create("sgd", learning_rate=1.0, momentum=0.9))
    kv.push("w", nd.array([1.0]))
    kv.save_optimizer_states(str(tmp_path / "kv.states"))
    fresh = kvstore.create()
    fresh.init("w", nd.array([-1.0]))
    fresh.load_optimizer_states(str(tmp_path / "kv.states"))
    fresh.push("w", nd.array([1.0]))
    out = nd.zeros(1)
    fresh.pull("w", out=out)
    assert out.asnumpy().tolist() == pytest.approx([-2.9])


# ---- Gluon's store types and stores of one's own ---------------------------------------------
@pytest.mark.parametrize("name", ["local", "device", "local_allreduce_cpu",
                                  "local_allreduce_device", "LOCAL"])
def test_every_single_machine_type_is_the_in_process_store(name):
    kv = kvstore.create(name)
    assert isinstance(kv, kvstore.LocalKVStore) and kv.type == name.lower()
    assert kv.is_capable(kvstore.KVStoreBase.OPTIMIZER)


def test_create_refuses_a_name_that_is_not_a_string():
    with pytest.raises(TypeError, match="name must be a string"):
        kvstore.create(3)


def test_register_refuses_a_class_that_is_not_a_kvstore():
    with pytest.raises(TypeError, match="Can only register subclass of KVStoreBase"):
        kvstore.KVStoreBase.register(dict)


def test_a_registered_store_written_for_gluon_serves_the_trainer():
    from paramstore import autograd, gluon

    @kvstore.KVStoreBase.register
    class SummingStore(kvstore.KVStoreBase):
        """Gluon's minimal store: broadcast, pushpull (sum only), no optimizer."""

        calls = []

        def broadcast(self, key, value, out, priority=0):
            self.calls.append(("broadcast", key))
            for target in kvstore.as_list(out):
                target[:] = value

        def pushpull(self, key, value, out=None, priority=0):
            self.calls.append(("pushpull", key))
            total = sum(v.asnumpy() for v in kvstore.as_list(value))
            for target in kvstore.as_list(out if out is not None else value):
                target[:] = total

        def is_capable(self, capability):
            return False

    assert isinstance(kvstore.create("summingstore"), SummingStore)
    w = gluon.Parameter("w", shape=(2,), init="ones")
    w.initialize()
    trainer = gluon.Trainer([w], "sgd", {"learning_rate": 0.5}, kvstore="SummingStore")
    with autograd.record():
        loss = (w.data() * 3).sum()
    loss.backward()
    trainer.step(1)
    assert w.data().asnumpy().tolist() == [-0.5, -0.5]  # the store summed, the trainer updated
    assert SummingStore.calls == [("broadcast", "w"), ("pushpull", "w")]
    with pytest.warns(UserWarning, match="is overriding existing kvstore"):
        kvstore.KVStoreBase.register(SummingStore)
    del kvstore.KVStoreBase.kv_registry["summingstore"]
