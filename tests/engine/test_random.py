"""Samplers: Gluon's shapes and dtypes, the right distributions, one seed for every draw."""

import numpy as np

import paramstore.random
from paramstore import nd


def test_randn_takes_its_shape_as_positional_integers():
    draws = nd.random.randn(2, 3, loc=1.0, scale=2.0)
    assert (draws.shape, draws.dtype) == ((2, 3), np.float32)


def test_randn_draws_a_standard_normal_by_default():
    draws = nd.random.randn(20000).asnumpy()
    assert abs(draws.mean()) < 0.03 and abs(draws.std() - 1.0) < 0.03


def test_nd_uniform_and_normal_are_the_random_samplers():
    assert nd.uniform(-1, 1, shape=(4,)).shape == (4,)
    draws = nd.normal(5.0, 0.5, shape=(20000,)).asnumpy()
    assert abs(draws.mean() - 5.0) < 0.02 and abs(draws.std() - 0.5) < 0.02


def test_array_parameters_give_shape_draws_per_element():
    draws = nd.random.uniform(low=nd.array([0, 10]), high=nd.array([1, 11]), shape=(3, 500))
    assert draws.shape == (2, 3, 500)
    assert draws[0].asnumpy().max() < 1.0 and draws[1].asnumpy().min() >= 10.0


def test_array_parameters_without_shape_give_one_draw_each():
    draws = nd.random.normal(loc=nd.array([0.0, 100.0]), scale=nd.array([1.0, 0.1]))
    assert draws.shape == (2,) and abs(draws.asnumpy()[1] - 100.0) < 1.0


def test_shuffle_permutes_whole_rows_into_a_new_array():
    data = nd.arange(12).reshape((6, 2))
    shuffled = nd.random.shuffle(data)
    rows = sorted(map(tuple, shuffled.asnumpy().tolist()))
    assert rows == sorted(map(tuple, data.asnumpy().tolist()))
    assert shuffled.asnumpy().tolist() != data.asnumpy().tolist()
    assert data.asnumpy()[:, 0].tolist() == [0, 2, 4, 6, 8, 10]


def test_paramstore_random_has_gluons_samplers_with_gluons_dtypes():
    assert paramstore.random.uniform(shape=(2,)).dtype == np.float32
    assert paramstore.random.normal(shape=(2,)).dtype == np.float32
    assert paramstore.random.randint(0, 5, shape=(3,)).dtype == np.int32


def test_seed_repeats_every_sampler():
    def draws():
        paramstore.random.seed(7)
        return [nd.random.randn(3).asnumpy().tolist(),
                nd.random.shuffle(nd.arange(5)).asnumpy().tolist(),
                paramstore.random.uniform(shape=(2,)).asnumpy().tolist()]

    assert draws() == draws()


def test_draws_are_placed_on_the_context_asked_for():
    from paramstore import cpu

    assert nd.random.uniform(shape=(2,), ctx=cpu(1)).context == cpu(1)
    assert nd.random.randn(2, ctx=cpu(1)).context == cpu(1)
    assert nd.random.randint(0, 3, shape=(2,)).context == cpu(0)
