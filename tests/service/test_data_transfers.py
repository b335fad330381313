"""Pulls and pushes over the data channel: what Pull and Push do, from or into one store version,
with tickets bound to one store and one kind of transfer, and gRPC whenever the channel cannot
be used.

`channel` lowers the size from which a transfer uses the data channel so that small stores use
it; `paths(client)` records, pull by pull, whether the data channel carried it, and
`pushes(client)` the same for pushes."""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from certificates import Authority
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramstore import gluon, nd
from paramstore.client import Client, data_transfers, pulling
from paramstore.client.errors import (
    Aborted,
    FailedPrecondition,
    ParamstoreError,
    PermissionDenied,
    Unavailable,
)
from paramstore.dtypes import numpy_dtype
from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.admission import CallLimits
from paramstore.server.auth import Token
from paramstore.server.data_channel import DataLimits

LIMITS = DataLimits(read_timeout=1.0, ticket_seconds=1.0)
ABORTED, NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAUTHENTICATED = 10, 5, 3, 8, 16
_stores = itertools.count()


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_transfers, "MIN_BYTES", 0)


def paths(client: Client) -> list[bool]:
    """Whether the data channel carried each pull of `client` from now on."""
    used: list[bool] = []
    read = client.data_transfers.read

    def recorded(*args: Any) -> bool:
        used.append(read(*args))
        return used[-1]

    client.data_transfers.read = recorded  # type: ignore[method-assign]
    return used


def pushes(client: Client) -> list[bool]:
    """Whether the data channel carried each push of `client` from now on."""
    used: list[bool] = []
    push = client.data_transfers.push

    def recorded(*args: Any) -> int | None:
        try:
            version = push(*args)
        except ParamstoreError:  # refused on the data channel
            used.append(True)
            raise
        used.append(version is not None)
        return version

    client.data_transfers.push = recorded  # type: ignore[method-assign]
    return used


def values(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    drawn = np.random.default_rng(seed).normal(0, 50, shape)
    return drawn.astype(np.float32).astype(numpy_dtype(dtype))


def reader(client: Client, store: str, method: str = "OpenDataRead") -> socket.socket:
    """A raw connection admitted with a read ticket of `store` (or `method`'s)."""
    request = pb.OpenDataReadRequest if method == "OpenDataRead" else pb.OpenDataWriteRequest
    reply = client.call(method, request(store=store))
    stream = socket.create_connection((client.address.rsplit(":", 1)[0], reply.port), timeout=5)
    stream.sendall(reply.ticket)
    assert frames.read_message(stream, pb.DataStatus).code == 0
    return stream


def read(stream: socket.socket, store: str, version: int, *names: str) -> pb.DataStatus:
    frames.send_message(stream, pb.DataRead(store=store, version=version, names=names))
    return frames.read_message(stream, pb.DataStatus)


def ends_without_data(stream: socket.socket) -> bool:
    stream.settimeout(5)
    try:
        return stream.recv(1) == b""
    except ConnectionError:
        return True


# ---- the values ------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(st.lists(st.integers(0, 6), max_size=3).map(tuple), min_size=1,
                       max_size=4),
       dtype=st.sampled_from(["float32", "float16", "bfloat16", "float64", "int64", "int8",
                              "uint16", "bool"]),
       over_the_threshold=st.booleans())
def test_a_pull_over_the_data_channel_equals_a_pull_over_grpc(
        client: Client, monkeypatch: pytest.MonkeyPatch, shapes: list[tuple[int, ...]],
        dtype: str, over_the_threshold: bool) -> None:
    store = client.create_store(f"s{next(_stores)}")
    pushed = {f"p{index}": values(shape, dtype, index) for index, shape in enumerate(shapes)}
    store.push(pushed)
    used = paths(client)
    monkeypatch.setattr(data_transfers, "MIN_BYTES", 0 if over_the_threshold else 1 << 40)
    direct = {name: np.zeros_like(array) for name, array in pushed.items()}
    store.pull(direct)
    monkeypatch.setattr(data_transfers, "MIN_BYTES", 1 << 40)
    through_grpc = {name: np.zeros_like(array) for name, array in pushed.items()}
    store.pull(through_grpc)
    assert used == [over_the_threshold, False]
    for name, array in pushed.items():
        np.testing.assert_array_equal(direct[name], through_grpc[name])
        np.testing.assert_array_equal(direct[name], array)


def test_a_tensor_under_several_names_is_read_once_into_each(client: Client, channel: None
                                                             ) -> None:
    store = client.create_store("tied")
    store.push({"a_weight": np.full(5, 1.0, np.float32), "b_weight": np.zeros(5, np.float32)})
    store.tie("c_weight", "a_weight")
    shared = np.zeros(5, np.float32)
    local = {"a_weight": np.zeros(5, np.float32), "b_weight": shared, "b_alias": shared,
             "c_weight": np.zeros(5, np.float32)}
    store.tie("b_alias", "b_weight")
    store.set_data("b_weight", np.full(5, 2.0, np.float32))
    used = paths(client)
    store.pull(local)
    assert used == [True]
    assert [float(array[0]) for array in local.values()] == [1.0, 2.0, 2.0, 1.0]


def test_a_gluon_net_is_filled_over_the_data_channel_deferred_parameters_too(
        client: Client, channel: None) -> None:
    source = gluon.nn.Dense(3, in_units=4, prefix="dense0_")
    source.initialize()
    store = client.create_store("net")
    store.push(source.collect_params())
    target = gluon.nn.Dense(3, prefix="dense0_")  # in_units deferred: no data yet
    target.initialize()
    used = paths(client)
    store.pull(target.collect_params())
    assert used == [True]
    assert target(nd.ones((1, 4))).shape == (1, 3)  # the deferred initialization takes the data
    np.testing.assert_array_equal(target.weight.data().asnumpy(),
                                  source.weight.data().asnumpy())


# ---- one version -----------------------------------------------------------------------------


def test_a_store_written_after_its_listing_is_listed_and_read_again(
        client: Client, channel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    store = client.create_store("moving")
    store.push({"w": np.full(64, 1.0, np.float32), "v": np.full(64, 1.0, np.float32)})
    listed = pulling._checked_listing
    listings = []

    def listing_then_a_write(*args: Any) -> Any:
        listing = listed(*args)
        listings.append(listing.version)
        if len(listings) == 1:
            store.push({"w": np.full(64, 2.0, np.float32), "v": np.full(64, 2.0, np.float32)})
        return listing

    monkeypatch.setattr(pulling, "_checked_listing", listing_then_a_write)
    local = {"w": np.zeros(64, np.float32), "v": np.zeros(64, np.float32)}
    used = paths(client)
    store.pull(local)
    assert len(set(listings)) == 2 and used == [True]  # the first read was refused
    assert all((array == 2.0).all() for array in local.values())


def test_pulls_of_a_store_being_written_each_see_one_version(client: Client, channel: None
                                                            ) -> None:
    names = [f"layer{index}_weight" for index in range(4)]
    store = client.create_store("written")
    store.push({name: np.zeros(4096, np.float32) for name in names})
    stop = threading.Event()

    def write() -> None:
        for value in itertools.count(1):
            if stop.is_set():
                return
            store.push({name: np.full(4096, value, np.float32) for name in names})

    def pull() -> set[float]:
        seen: set[float] = set()
        for _ in range(15):
            local = {name: np.full(4096, -1, np.float32) for name in names}
            try:
                store.pull(local)
            except Aborted:  # written between listing and reading three times: allowed
                assert all((array == -1).all() for array in local.values())
                continue
            found = {float(value) for array in local.values() for value in np.unique(array)}
            assert len(found) == 1, f"one pull saw the values of several versions: {found}"
            seen |= found
        return seen

    with ThreadPoolExecutor(3) as threads:
        writing = threads.submit(write)
        try:
            readers = [threads.submit(pull) for _ in range(2)]
            seen = set().union(*(each.result() for each in readers))
        finally:
            stop.set()
            writing.result()
    assert len(seen) > 1  # the pulls did read while the store changed


def test_a_read_of_a_version_the_store_moved_past_is_aborted_and_sends_nothing(
        client: Client) -> None:
    store = client.create_store("a")
    store.push({"w": np.ones(4, np.float32)})
    version = client.call("GetStore", pb.GetStoreRequest(name="a")).version
    store.push({"w": np.zeros(4, np.float32)})
    stream = reader(client, "a")
    status = read(stream, "a", version, "w")
    assert status.code == ABORTED and "list it again" in status.message
    assert ends_without_data(stream)


def test_a_read_of_a_missing_name_is_not_found(client: Client) -> None:
    store = client.create_store("a")
    store.push({"w": np.ones(4, np.float32)})
    version = client.call("GetStore", pb.GetStoreRequest(name="a")).version
    status = read(reader(client, "a"), "a", version, "w", "nope")
    assert status.code == NOT_FOUND and "nope" in status.message


def test_a_read_naming_a_parameter_twice_is_refused_and_sends_nothing(client: Client) -> None:
    store = client.create_store("a")
    store.push({"w": np.ones(1 << 18, np.float32)})
    version = client.call("GetStore", pb.GetStoreRequest(name="a")).version
    stream = reader(client, "a")
    status = read(stream, "a", version, *["w"] * 1000)  # 1 GiB of body from a 4 kB header
    assert status.code == INVALID_ARGUMENT and "more than once" in status.message
    assert ends_without_data(stream)


# ---- tickets ---------------------------------------------------------------------------------


def test_a_read_only_token_pulls_over_the_data_channel(make_server: Callable[..., Any],
                                                      channel: None) -> None:
    server = make_server(token=[Token("writer"), Token("reader", read_only=True)])
    with server.connect(token="writer") as writer, server.connect(token="reader") as reading:
        writer.create_store("a").push({"w": np.arange(6, dtype=np.float32)})
        used = paths(reading)
        local = {"w": np.zeros(6, np.float32)}
        reading.store("a").pull(local)
    assert used == [True]
    np.testing.assert_array_equal(local["w"], np.arange(6))


def test_a_read_ticket_cannot_step(client: Client) -> None:
    client.create_store("a")
    kv = client.kvstore("a", mode="async", num_workers=1, shared_memory=False)
    try:
        kv.init("w", nd.zeros((4,)))
        stream = reader(client, "a")
        step = pb.DataStep(begin=pb.PushBegin(store="a", rank=kv.rank, parameter_count=1),
                           parameters=[pb.ParameterSpec(name="w", shape=[4], dtype="float32",
                                                        has_data=True)])
        frames.send_message(stream, step)
        stream.sendall(np.full(4, 9.0, np.float32).tobytes())
        assert frames.read_message(stream, pb.DataStatus).code != 0
        assert ends_without_data(stream)
        assert client.store("a").collect_params()["w"].data().asnumpy().tolist() == [0.0] * 4
    finally:
        kv.close()


def test_a_training_ticket_cannot_read(client: Client) -> None:
    client.create_store("a")
    kv = client.kvstore("a", mode="async", num_workers=1, shared_memory=False)
    try:
        kv.init("w", nd.ones((4,)))
        version = client.call("GetStore", pb.GetStoreRequest(name="a")).version
        reply = client.call("OpenDataChannel", pb.OpenDataChannelRequest(store="a",
                                                                         rank=kv.rank))
        stream = socket.create_connection(("127.0.0.1", reply.port), timeout=5)
        stream.sendall(reply.ticket)
        assert frames.read_message(stream, pb.DataStatus).code == 0
        assert read(stream, "a", version, "w").code != 0
        assert ends_without_data(stream)
    finally:
        kv.close()


def test_a_read_ticket_of_one_store_cannot_read_another(client: Client) -> None:
    client.create_store("a").push({"w": np.ones(4, np.float32)})
    client.create_store("b").push({"w": np.ones(4, np.float32)})
    version = client.call("GetStore", pb.GetStoreRequest(name="b")).version
    status = read(reader(client, "a"), "b", version, "w")
    assert status.code == INVALID_ARGUMENT and "'a'" in status.message


@pytest.mark.parametrize("wait", [0.0, 1.5], ids=["replayed", "expired"])
def test_a_read_ticket_replayed_or_expired_is_refused(make_server: Callable[..., Any],
                                                      wait: float) -> None:
    server = make_server(data_limits=LIMITS)
    with server.connect() as client:
        client.create_store("a")
        reply = client.call("OpenDataRead", pb.OpenDataReadRequest(store="a"))
        if not wait:
            first = socket.create_connection(("127.0.0.1", reply.port), timeout=5)
            first.sendall(reply.ticket)
            assert frames.read_message(first, pb.DataStatus).code == 0
        time.sleep(wait)
        again = socket.create_connection(("127.0.0.1", reply.port), timeout=5)
        again.sendall(reply.ticket)
        assert frames.read_message(again, pb.DataStatus).code == UNAUTHENTICATED


def test_a_reader_that_sends_no_read_is_closed_after_the_read_timeout(
        make_server: Callable[..., Any]) -> None:
    server = make_server(data_limits=LIMITS)
    with server.connect() as client:
        client.create_store("a")
        stream = reader(client, "a")
        started = time.monotonic()
        assert ends_without_data(stream)
        assert time.monotonic() - started < 4


# ---- a connection cut, no channel, TLS -------------------------------------------------------


class CuttingRelay:
    """A TCP relay to `port` that ends the connection once `cut_after` bytes came down."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.port_to, self.cut_after = port, cut_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(("127.0.0.1", self.port_to))

        def up() -> None:
            with contextlib.suppress(OSError):  # the cut closes both sockets under it
                while data := client.recv(1 << 16):
                    server.sendall(data)

        threading.Thread(target=up, daemon=True).start()
        passed = 0
        while passed < self.cut_after and (data := server.recv(self.cut_after - passed)):
            client.sendall(data)
            passed += len(data)
        for stream in (client, server):  # shut first: the other thread is reading from them
            stream.shutdown(socket.SHUT_RDWR)
            stream.close()


def test_a_pull_cut_mid_body_fails_leaving_each_tensor_read_whole_before_the_cut(
        client: Client, channel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 1 << 18  # elements: 1 MiB of float32
    store = client.create_store("a")
    names = ["w0", "w1", "w2", "w3"]
    store.push({name: np.full(size, 1.0, np.float32) for name in names})
    local = {name: np.zeros(size, np.float32) for name in names}
    opened = data_transfers._TransferConnection.open.__func__  # type: ignore[attr-defined]

    def through_relay(cls: Any, host: str, port: int, *rest: Any) -> Any:
        relay = CuttingRelay(port, cut_after=2 * frames.LENGTH.size + (3 << 20) // 2)
        return opened(cls, host, relay.port, *rest)

    monkeypatch.setattr(data_transfers._TransferConnection, "open", classmethod(through_relay))
    with pytest.raises(Unavailable, match="pull again"):
        store.pull(local)
    assert (local["w0"] == 1.0).all()
    assert (local["w2"] == 0).all() and (local["w3"] == 0).all()
    monkeypatch.undo()
    store.pull(local)
    assert all((array == 1.0).all() for array in local.values())


def test_without_a_data_channel_pulls_go_through_grpc_and_say_why_once(
        make_server: Callable[..., Any], channel: None, caplog: pytest.LogCaptureFixture
        ) -> None:
    server = make_server(data_port=None)
    with server.connect() as client, caplog.at_level(logging.WARNING, "paramstore.client"):
        store = client.create_store("a")
        store.push({"w": np.arange(4, dtype=np.float32)})
        used = paths(client)
        for _ in range(2):
            local = {"w": np.zeros(4, np.float32)}
            store.pull(local)
            np.testing.assert_array_equal(local["w"], np.arange(4))
    assert used == [False, False]
    warnings = [record for record in caplog.records if "go through gRPC" in record.message]
    assert len(warnings) == 1 and "no data channel" in warnings[0].message


def test_a_pull_beyond_the_data_connection_cap_goes_through_grpc(make_server: Callable[..., Any],
                                                                 channel: None) -> None:
    server = make_server(data_limits=DataLimits(max_connections=1))
    with server.connect() as client:
        store = client.create_store("a")
        store.push({"w": np.arange(4, dtype=np.float32)})
        held = reader(client, "a")  # the one connection the server takes
        used = paths(client)
        local = {"w": np.zeros(4, np.float32)}
        store.pull(local)
        held.close()
    assert used == [False]
    np.testing.assert_array_equal(local["w"], np.arange(4))


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority("paramstore data pull CA")


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_a_tls_server_serves_pulls_over_a_tls_data_channel(
        make_server: Callable[..., Any], authority: Authority, channel: None,
        mutual: bool) -> None:
    server = make_server(tls=authority.issue_server().pair,
                         tls_client_ca=authority.cert if mutual else None)
    options = {"client_cert": authority.issue_client().pair} if mutual else {}
    with server.connect(tls=authority.cert, **options) as client:
        client.create_store("a").push({"w": np.arange(6, dtype=np.float32)})
        used = paths(client)
        local = {"w": np.zeros(6, np.float32)}
        client.store("a").pull(local)
    assert used == [True]
    np.testing.assert_array_equal(local["w"], np.arange(6))


# ---- pushes ----------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(st.lists(st.integers(0, 6), max_size=3).map(tuple), min_size=1,
                       max_size=4),
       dtype=st.sampled_from(["float32", "bfloat16", "float64", "int8", "bool"]))
def test_a_push_over_the_data_channel_stores_what_a_push_over_grpc_does(
        client: Client, monkeypatch: pytest.MonkeyPatch, shapes: list[tuple[int, ...]],
        dtype: str) -> None:
    pushed = {f"p{index}": values(shape, dtype, index) for index, shape in enumerate(shapes)}
    pushed["tied"] = pushed["p0"]  # the same array under two names: a tie
    used = pushes(client)
    stores = []
    for threshold in (0, 1 << 40):
        monkeypatch.setattr(data_transfers, "MIN_BYTES", threshold)
        stores.append(client.create_store(f"s{next(_stores)}"))
        stores[-1].push(pushed)
    assert used == [True, False]
    direct, through_grpc = stores
    assert str(direct.collect_params()) == str(through_grpc.collect_params())
    assert direct.ties() == through_grpc.ties() == {"tied": "p0"}
    for name, array in pushed.items():
        np.testing.assert_array_equal(direct.collect_params()[name].data().asnumpy(), array)


def test_a_push_whose_specs_outgrow_a_data_channel_header_goes_through_grpc(
        client: Client, channel: None) -> None:
    pushed = {f"layer{index:05d}_" + "w" * 200: np.full(2, index, np.float32)
              for index in range(5000)}  # over 1 MiB of specs
    used = pushes(client)
    store = client.create_store("wide")
    store.push(pushed)
    assert used == [False]
    assert len(store.collect_params()) == 5000


def test_a_refused_push_over_the_data_channel_changes_nothing(client: Client, channel: None
                                                             ) -> None:
    store = client.create_store("a")
    version = store.push({"w": np.zeros(4, np.float32)})
    used = pushes(client)
    with pytest.raises(FailedPrecondition, match="'w'"):
        store.push({"v": np.ones(8, np.float32), "w": np.ones(5, np.float32)})
    with pytest.raises(FailedPrecondition, match="version"):
        store.push({"w": np.ones(4, np.float32)}, expected_version=version + 1)
    assert client.call("GetStore", pb.GetStoreRequest(name="a")).version == version
    assert list(store.collect_params()) == ["w"]
    assert used == [True, True]


def test_a_read_only_token_cannot_push_over_the_data_channel(make_server: Callable[..., Any],
                                                            channel: None) -> None:
    server = make_server(token=[Token("writer"), Token("reader", read_only=True)])
    with server.connect(token="writer") as writer, server.connect(token="reader") as reading:
        writer.create_store("a")
        with pytest.raises(PermissionDenied):
            reading.store("a").push({"w": np.ones(4, np.float32)})
        with pytest.raises(PermissionDenied):
            reading.call("OpenDataWrite", pb.OpenDataWriteRequest(store="a"))


def _write(store: str, *specs: pb.ParameterSpec) -> pb.DataWrite:
    return pb.DataWrite(begin=pb.PushBegin(store=store, parameter_count=len(specs)),
                        parameters=specs)


def _spec(name: str, elements: int) -> pb.ParameterSpec:
    return pb.ParameterSpec(name=name, shape=[elements], dtype="float32", dtype_label="float32",
                            kind="Parameter", has_data=True)


def test_a_read_ticket_cannot_push_and_a_write_ticket_cannot_read(client: Client) -> None:
    client.create_store("a").push({"w": np.zeros(4, np.float32)})
    version = client.call("GetStore", pb.GetStoreRequest(name="a")).version
    pushing = reader(client, "a")
    frames.send_message(pushing, _write("a", _spec("w", 4)))
    pushing.sendall(np.ones(4, np.float32).tobytes())
    assert frames.read_message(pushing, pb.DataStatus).code != 0
    reading = reader(client, "a", "OpenDataWrite")
    assert read(reading, "a", version, "w").code != 0
    assert ends_without_data(reading)
    assert client.call("GetStore", pb.GetStoreRequest(name="a")).version == version


def test_a_write_ticket_of_one_store_cannot_push_into_another(client: Client) -> None:
    client.create_store("a")
    client.create_store("b")
    stream = reader(client, "a", "OpenDataWrite")
    frames.send_message(stream, _write("b", _spec("w", 4)))
    stream.sendall(np.ones(4, np.float32).tobytes())
    status = frames.read_message(stream, pb.DataStatus)
    assert status.code == INVALID_ARGUMENT and "'a'" in status.message
    assert list(client.store("b").collect_params()) == []


def test_a_push_whose_reply_is_lost_is_sent_again_as_a_push_and_applied_once(
        client: Client, channel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    store = client.create_store("a")
    version = store.push({"w": np.zeros(4, np.float32)})
    values = {"w": np.arange(4, dtype=np.float32), "big": np.ones(1 << 21, np.float32)}
    opened = data_transfers._TransferConnection.open.__func__  # type: ignore[attr-defined]

    def through_relay(cls: Any, host: str, port: int, *rest: Any) -> Any:
        # The server's answers pass up to the push's status: the push is applied, its
        # PushResponse never arrives.
        relay = CuttingRelay(port, cut_after=2 * frames.LENGTH.size)
        return opened(cls, host, relay.port, *rest)

    monkeypatch.setattr(data_transfers._TransferConnection, "open", classmethod(through_relay))
    # Applied twice, the second would be refused: the store is no longer at `version`.
    pushed = store.push(values, expected_version=version)
    monkeypatch.undo()
    assert pushed != version
    assert client.call("GetStore", pb.GetStoreRequest(name="a")).version == pushed
    local = {name: np.zeros_like(array) for name, array in values.items()}
    store.pull(local)
    for name, array in values.items():
        np.testing.assert_array_equal(local[name], array)


def test_a_push_cut_mid_body_writes_nothing(client: Client) -> None:
    store = client.create_store("a")
    version = store.push({"w": np.zeros(4, np.float32)})
    stream = reader(client, "a", "OpenDataWrite")
    frames.send_message(stream, _write("a", _spec("w", 4), _spec("v", 1 << 18)))
    stream.sendall(np.ones(4 + (1 << 17), np.float32).tobytes())
    stream.close()
    time.sleep(0.3)
    assert client.call("GetStore", pb.GetStoreRequest(name="a")).version == version
    assert list(store.collect_params()) == ["w"]


def test_a_push_body_trickling_in_is_closed_and_writes_nothing(make_server: Callable[..., Any]
                                                                ) -> None:
    server = make_server(data_limits=LIMITS)
    with server.connect() as client:
        store = client.create_store("a")
        version = store.push({"w": np.zeros(4, np.float32)})
        stream = reader(client, "a", "OpenDataWrite")
        frames.send_message(stream, _write("a", _spec("w", 4)))
        started = time.monotonic()
        with pytest.raises(OSError):
            for byte in np.ones(4, np.float32).tobytes():
                stream.sendall(bytes([byte]))
                time.sleep(0.25)
        assert time.monotonic() - started < LIMITS.read_timeout + 3
        assert client.call("GetStore", pb.GetStoreRequest(name="a")).version == version


def test_a_push_over_the_inflight_byte_budget_is_refused_before_its_body(
        make_server: Callable[..., Any]) -> None:
    server = make_server(calls=CallLimits(max_inflight_bytes=1 << 20))
    with server.connect() as client:
        client.create_store("a")
        stream = reader(client, "a", "OpenDataWrite")
        frames.send_message(stream, _write("a", _spec("w", 1 << 19)))  # 2 MiB, no body sent
        status = frames.read_message(stream, pb.DataStatus)
        assert (status.code, status.error_kind) == (RESOURCE_EXHAUSTED, "ResourceExhausted")
        assert list(client.store("a").collect_params()) == []
