"""Learning-rate schedules against MXNet 1.9.1, and how optimizers and Trainer use them."""

import json
import pathlib

import numpy as np
import pytest
from oracle.training_cases import SCHEDULES, UPDATES

from paramstore import autograd, gluon, lr_scheduler, nd, optimizer

RECORDED = json.loads((pathlib.Path(__file__).parent / "oracle" / "training.json").read_text())


@pytest.mark.parametrize("case, name, kwargs", SCHEDULES, ids=[case[0] for case in SCHEDULES])
def test_schedule_gives_gluons_learning_rates(case, name, kwargs):
    schedule = getattr(lr_scheduler, name)(**kwargs)
    rates = [schedule(update) for update in range(UPDATES)]
    np.testing.assert_allclose(rates, RECORDED["schedules"][case], rtol=1e-12)


@pytest.mark.parametrize("case, name, kwargs", SCHEDULES, ids=[case[0] for case in SCHEDULES])
def test_a_rebuilt_schedule_answers_as_the_original(case, name, kwargs):
    original = getattr(lr_scheduler, name)(**kwargs)
    for update in range(UPDATES // 2):
        original(update)
    rebuilt = lr_scheduler.create_from_config(json.loads(original.dumps()))
    later = UPDATES // 2
    expected = RECORDED["schedules"][case][later]
    assert rebuilt(later) == pytest.approx(expected, rel=1e-12)
    assert original(later) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: lr_scheduler.FactorScheduler(step=0), "Schedule step must be greater or equal"),
    (lambda: lr_scheduler.FactorScheduler(step=2, factor=1.5), "Factor must be no more than 1"),
    (lambda: lr_scheduler.MultiFactorScheduler(step=[5, 3]), "increasing integer list"),
    (lambda: lr_scheduler.PolyScheduler(max_update=0), "must be strictly positive"),
    (lambda: lr_scheduler.CosineScheduler(10, base_lr=0.1, warmup_begin_lr=0.2),
     "Base lr has to be higher than warmup_begin_lr"),
    (lambda: lr_scheduler.CosineScheduler(10, warmup_mode="cubic"), "linear and constant"),
    (lambda: lr_scheduler.create_from_config(["os.system", {}]), "config must be"),
])
def test_a_bad_schedule_is_refused_with_gluons_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_an_optimizer_asks_its_scheduler_at_each_update():
    schedule = lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=1.0)
    sgd = optimizer.create("sgd", lr_scheduler=schedule)
    weight = np.zeros(1, np.float32)
    for _ in range(5):
        sgd.update(0, weight, np.ones(1, np.float32))
    # updates 1..5 run at 1, 1, 0.5, 0.5, 0.25
    assert weight.tolist() == [-3.25]
    assert sgd.learning_rate == 0.25


def test_the_optimizers_own_learning_rate_overrides_the_schedulers_with_a_warning():
    schedule = lr_scheduler.FactorScheduler(step=10, base_lr=1.0)
    with pytest.warns(UserWarning, match="overwritten by ``learning_rate``"):
        adam = optimizer.create("adam", lr_scheduler=schedule)  # Adam's default 0.001 wins
    assert schedule.base_lr == adam.learning_rate == 0.001


def test_set_learning_rate_is_refused_while_a_scheduler_sets_the_rate():
    w = gluon.Parameter("w", shape=(1,))
    w.initialize()
    trainer = gluon.Trainer(
        [w], "sgd",
        {"lr_scheduler": lr_scheduler.FactorScheduler(step=1, base_lr=0.1)},
    )
    with pytest.raises(UserWarning, match="LRScheduler of the optimizer has already been defined"):
        trainer.set_learning_rate(0.5)


def test_trainer_steps_follow_the_schedule():
    w = gluon.Parameter("w", shape=(1,), init="zeros")
    w.initialize()
    trainer = gluon.Trainer([w], "sgd", {"lr_scheduler": lr_scheduler.MultiFactorScheduler(
        step=[1, 2], factor=0.1, base_lr=1.0)})
    for _ in range(3):
        with autograd.record():
            loss = (w.data() * 1.0).sum()
        loss.backward()
        trainer.step(1)
    np.testing.assert_allclose(w.data().asnumpy(), [-1.11], rtol=1e-6)
    assert trainer.learning_rate == pytest.approx(0.01)


def test_a_scheduled_optimizer_travels_as_data():
    sgd = optimizer.create("sgd", momentum=0.9,
                           lr_scheduler=lr_scheduler.PolyScheduler(max_update=8, base_lr=0.2))
    rebuilt = optimizer.create_from_json(sgd.dumps())
    weights = [nd.ones((2,)).asnumpy() for _ in range(2)]
    for _ in range(4):
        for opt, weight in zip((sgd, rebuilt), weights):
            opt.update("w", weight, np.full(2, 0.5, np.float32))
    assert weights[0].tolist() == weights[1].tolist()
    assert isinstance(rebuilt.lr_scheduler, lr_scheduler.PolyScheduler)


def test_a_store_side_optimizer_follows_the_same_schedule():
    from paramstore import kvstore

    def trained(store):
        w = gluon.Parameter("w", shape=(1,), init="zeros")
        w.initialize()
        schedule = lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=1.0)
        trainer = gluon.Trainer([w], "sgd", {"lr_scheduler": schedule}, kvstore=store)
        for _ in range(3):
            with autograd.record():
                loss = w.data().sum()
            loss.backward()
            trainer.step(1)
        return w.data().asnumpy().tolist()

    # updates 1..3 run at 1, 0.5, 0.25 whether the store or the trainer applies them
    assert trained(kvstore.create("local")) == trained("device") == [-1.75]
