"""Unbounded work from a small request: initializer arguments that would ask for unbounded
memory or time are refused against the parameter they initialize, and a slow initializer
never holds the store's lock, so other writes go on meanwhile."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramstore import init, nd
from paramstore.client.errors import InvalidArgument

pytest_plugins = ("server_fixtures",)  # `server`


@pytest.mark.parametrize("arguments", [
    {"num_hidden": 4, "num_layers": 10**12, "mode": "lstm"},
    {"num_hidden": 10**12, "num_layers": 1, "mode": "gru"},
    {"num_hidden": 0, "num_layers": 1, "mode": "lstm"},
    {"num_hidden": 4, "num_layers": -5, "mode": "lstm"},
])
def test_fused_rnn_arguments_that_do_not_fit_the_parameter_are_refused_quickly(
        server, arguments):
    with server.connect() as client:
        store = client.create_store("rnn") if "rnn" not in client.list_stores() \
            else client.store("rnn")
        store.push({"rnn_parameters": np.zeros(1000, np.float32)})
        hostile = json.dumps(["fusedrnn", {"init": None, "bidirectional": False,
                                           "forget_bias": 1.0, **arguments}])
        started = time.monotonic()
        with pytest.raises(InvalidArgument, match="rnn_parameters|FusedRNN"):
            store.initialize(hostile, force_reinit=True)
        assert time.monotonic() - started < 5
        values = {"rnn_parameters": np.ones(1000, np.float32)}
        store.pull(values)
        assert not values["rnn_parameters"].any()  # nothing changed


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(num_hidden=st.integers(min_value=-3, max_value=2**40),
       num_layers=st.integers(min_value=-3, max_value=2**40),
       mode=st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"]),
       bidirectional=st.booleans())
def test_fused_rnn_layouts_are_bounded_by_the_parameter(num_hidden, num_layers, mode,
                                                        bidirectional):
    initializer = init.FusedRNN(init.Uniform(), num_hidden, num_layers, mode, bidirectional)
    array = nd.zeros((4096,))
    started = time.monotonic()
    try:
        initializer(init.InitDesc("rnn_parameters"), array)
    except (ValueError, ArithmeticError):
        pass
    assert time.monotonic() - started < 2


def test_a_slow_initializer_does_not_hold_the_store_lock(server):
    with server.connect() as client:
        store = client.create_store("big")
        store.push({"w": np.zeros((1000, 1000), np.float32), "b": np.zeros(4, np.float32)})
        done = threading.Event()
        pushes_meanwhile = []

        def initialize():
            store.initialize(init.Orthogonal(), select="w", force_reinit=True)
            done.set()

        worker = threading.Thread(target=initialize)
        worker.start()
        with server.connect() as other:
            while not done.is_set():
                other.store("big").push({"b": np.full(4, len(pushes_meanwhile), np.float32)})
                pushes_meanwhile.append(done.is_set())
        worker.join()
        assert pushes_meanwhile.count(False) >= 2  # writes went on while it computed
        values = {"w": np.zeros((1000, 1000), np.float32)}
        store.pull(values)
        np.testing.assert_allclose(values["w"] @ values["w"].T / 1.414**2, np.eye(1000),
                                   atol=1e-3)
