"""Hostile clients trying to freeze the server: calls that stall (pushes that stop sending,
pulls whose replies are never read, requests never sent), too many calls, too many bytes in
flight. Health and other callers keep being answered, stalled calls are cancelled, and
nothing acknowledged is lost."""

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_data_channel import READ_TIMEOUT, closed, read_status
from test_data_channel import Worker as DataWorker

from paramstore.client.errors import ResourceExhausted
from paramstore.proto import wire
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.admission import CallLimits
from paramstore.server.data_channel import DataLimits

pytest_plugins = ("server_fixtures",)  # `make_server`

ATTACKER, VICTIM = "attacker-token", "victim-token"
ANSWER_WITHIN = 10.0  # generous: the machine is shared


class Attacker:
    """Raw gRPC calls that stall on purpose; `release()` lets them go."""

    def __init__(self, address: str, token: str | None = ATTACKER) -> None:
        self.channel = grpc.insecure_channel(address)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.released = threading.Event()
        self.calls: list[grpc.Future] = []

    def stalled_push(self, store: str) -> None:
        """A push that announces a parameter, sends part of it and stops."""

        def requests() -> Iterator[pb.PushRequest]:
            yield pb.PushRequest(begin=pb.PushBegin(store=store, parameter_count=1))
            yield pb.PushRequest(parameter=pb.ParameterSpec(
                name="w", shape=[1024], dtype="float32", dtype_label="float32",
                kind="Parameter", has_data=True))
            yield pb.PushRequest(chunk=b"\0" * 16)
            self.released.wait()

        push = self.channel.stream_unary(wire.path("Push"),
                                         request_serializer=pb.PushRequest.SerializeToString,
                                         response_deserializer=pb.PushResponse.FromString)
        self.calls.append(push.future(requests(), metadata=self.metadata))

    def unread_pull(self, store: str) -> None:
        """A pull whose replies are never read."""
        pull = self.channel.unary_stream(wire.path("Pull"),
                                         request_serializer=pb.PullRequest.SerializeToString,
                                         response_deserializer=pb.PullResponse.FromString)
        self.calls.append(pull(pb.PullRequest(store=store), metadata=self.metadata))

    def silent_unary(self) -> None:
        """A unary call whose request message never comes (the stream stays open, empty)."""

        def requests() -> Iterator[pb.ListStoresRequest]:
            self.released.wait()
            yield pb.ListStoresRequest()

        call = self.channel.stream_unary(wire.path("ListStores"),
                                         request_serializer=pb.ListStoresRequest.SerializeToString,
                                         response_deserializer=pb.ListStoresResponse.FromString)
        self.calls.append(call.future(requests(), metadata=self.metadata))

    def codes(self) -> list[grpc.StatusCode]:
        return [_code(call) for call in self.calls]

    def close(self) -> None:
        self.released.set()
        for call in self.calls:
            call.cancel()
        self.channel.close()


def _code(call: grpc.Future) -> grpc.StatusCode:
    if hasattr(call, "exception") and call.done():
        error = call.exception()
        return error.code() if error is not None else grpc.StatusCode.OK
    try:
        for _ in call:
            pass
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def health_status(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=ANSWER_WITHIN).status


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def big_store(make_server):
    """A server with two tokens and small call bounds, holding a 16 MiB store 'big'."""
    server = make_server(token=[_token(ATTACKER), _token(VICTIM)],
                         calls=CallLimits(max_calls=12, max_calls_per_caller=6,
                                          idle_timeout=1.5))
    with server.connect(token=VICTIM) as client:
        client.create_store("big").push({"w": np.ones((4, 1 << 20), np.float32)})
        client.create_store("small").push({"v": np.arange(10, dtype=np.float32)})
    return server


def _token(secret):
    from paramstore.server.auth import Token
    return Token(secret)


def test_stalled_streams_leave_health_and_other_callers_answered(big_store):
    attacker = Attacker(big_store.address)
    try:
        for _ in range(10):
            attacker.stalled_push("small")
            attacker.unread_pull("big")
            attacker.silent_unary()
        time.sleep(0.3)
        started = time.monotonic()
        assert health_status(big_store.address) == health_pb2.HealthCheckResponse.SERVING
        with big_store.connect(token=VICTIM, timeout=ANSWER_WITHIN) as victim:
            values = {"v": np.zeros(10, np.float32)}
            victim.store("small").pull(values)
        assert time.monotonic() - started < ANSWER_WITHIN
        np.testing.assert_array_equal(values["v"], np.arange(10))
    finally:
        attacker.close()


def test_a_caller_over_its_bound_is_refused_with_resource_exhausted(big_store):
    attacker = Attacker(big_store.address)
    try:
        for _ in range(10):
            attacker.stalled_push("small")
        wait_for(lambda: sum(call.done() for call in attacker.calls) >= 4, ANSWER_WITHIN)
        refused = [call for call in attacker.calls if call.done()]
        assert {_code(call) for call in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert "per caller" in refused[0].exception().details()
    finally:
        attacker.close()


def test_stalled_calls_are_cancelled_after_the_idle_timeout(big_store):
    admission = big_store.server.admission
    attacker = Attacker(big_store.address)
    try:
        attacker.stalled_push("small")
        attacker.silent_unary()
        attacker.unread_pull("big")
        wait_for(lambda: admission.in_flight() == 3, ANSWER_WITHIN)
        # The idle timeout is 1.5 s: every stalled call is gone well within the deadline.
        wait_for(lambda: admission.in_flight() == 0, ANSWER_WITHIN)
        assert attacker.calls[0].exception().code() == grpc.StatusCode.CANCELLED
    finally:
        attacker.close()
    with big_store.connect(token=VICTIM) as victim:  # the half push wrote nothing
        values = {"v": np.zeros(10, np.float32)}
        victim.store("small").pull(values)
        np.testing.assert_array_equal(values["v"], np.arange(10))
        assert victim.store("small").info().parameter_count == 1


def test_work_that_does_not_wait_on_the_client_is_not_cancelled(make_server):
    server = make_server(calls=CallLimits(idle_timeout=0.5))
    with server.connect() as client:
        store = client.create_store("s")
        for step in range(4):  # each push waits on its client for less than the timeout
            store.push({"w": np.full(1 << 20, step, np.float32)})
            time.sleep(0.2)
        values = {"w": np.zeros(1 << 20, np.float32)}
        store.pull(values)
        assert values["w"][0] == 3


def test_the_total_bound_refuses_new_calls_but_health_still_answers(make_server):
    tokens = [f"attacker-{number}" for number in range(4)]
    server = make_server(token=[_token(token) for token in tokens],
                         calls=CallLimits(max_calls=6, max_calls_per_caller=3, idle_timeout=30))
    attackers = [Attacker(server.address, token) for token in tokens]
    try:
        for attacker in attackers:
            for _ in range(3):
                attacker.silent_unary()
        calls = [call for attacker in attackers for call in attacker.calls]
        wait_for(lambda: sum(call.done() for call in calls) == 6, ANSWER_WITHIN)
        assert server.server.admission.in_flight() == 6
        refused = [call.exception() for call in calls if call.done()]
        assert all(error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for error in refused)
        assert "its limit" in refused[0].details()
        assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        for attacker in attackers:
            attacker.close()


def test_defaults_alone_keep_health_answering_under_stalled_calls(make_server):
    server = make_server()  # no flags: the defaults must hold
    with server.connect() as client:
        client.create_store("big").push({"w": np.ones((4, 1 << 20), np.float32)})
    attacker = Attacker(server.address, token=None)
    try:
        for _ in range(40):
            attacker.unread_pull("big")
            attacker.silent_unary()
        time.sleep(0.5)
        assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
        assert server.server.admission.in_flight() <= CallLimits().max_calls_per_caller
    finally:
        attacker.close()


def test_bytes_in_flight_are_bounded(make_server):
    server = make_server(calls=CallLimits(max_inflight_bytes=6 << 20, idle_timeout=30))
    with server.connect() as client:
        client.create_store("s")
    attacker = Attacker(server.address, token=None)

    def announce(size: int) -> Iterator[pb.PushRequest]:
        yield pb.PushRequest(begin=pb.PushBegin(store="s", parameter_count=1))
        yield pb.PushRequest(parameter=pb.ParameterSpec(
            name="w", shape=[size // 4], dtype="float32", dtype_label="float32",
            kind="Parameter", has_data=True))
        attacker.released.wait()

    push = attacker.channel.stream_unary(wire.path("Push"),
                                         request_serializer=pb.PushRequest.SerializeToString,
                                         response_deserializer=pb.PushResponse.FromString)
    try:
        holding = push.future(announce(4 << 20))
        time.sleep(0.5)
        assert not holding.done()
        with pytest.raises(grpc.RpcError) as refused:
            push(announce(4 << 20), timeout=ANSWER_WITHIN)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "in flight" in refused.value.details()
        with server.connect() as client:  # a push that fits still goes through
            client.store("s").push({"x": np.ones(1 << 18, np.float32)})
    finally:
        attacker.close()
    wait_for(lambda: server.server.admission.in_flight() == 0, ANSWER_WITHIN)
    with server.connect() as client:  # the bytes are given back once the holder is gone
        client.store("s").push({"y": np.ones(1 << 20, np.float32)})
        with pytest.raises(ResourceExhausted):
            client.store("s").push({"z": np.ones(2 << 20, np.float32)})


def honest_writes_under_attack(server, seconds: float) -> None:
    """Honest clients push and read back while an attacker keeps opening stalled calls of
    every kind; every acknowledged write is then read back, and health kept answering."""
    attacker = Attacker(server.address)
    stop = threading.Event()
    acknowledged: dict[str, float] = {}
    failures: list[BaseException] = []

    def attack():
        while not stop.is_set():
            attacker.stalled_push("small")
            attacker.unread_pull("big")
            attacker.silent_unary()
            time.sleep(0.05)

    def write(name: str):
        try:
            with server.connect(token=VICTIM, timeout=ANSWER_WITHIN) as client:
                store = client.store("small")
                value = 0.0
                while not stop.is_set():
                    value += 1
                    store.push({name: np.full(16, value, np.float32)})
                    acknowledged[name] = value
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    threads = [threading.Thread(target=attack)]
    threads += [threading.Thread(target=write, args=(f"w{number}",)) for number in range(3)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        attacker.close()
    assert not failures, failures
    with server.connect(token=VICTIM) as client:
        values = {name: np.zeros(16, np.float32) for name in acknowledged}
        client.store("small").pull(values)
    assert len(acknowledged) == 3 and all(value >= 1 for value in acknowledged.values())
    for name, value in acknowledged.items():
        np.testing.assert_array_equal(values[name], value, err_msg=name)


def test_nothing_acknowledged_is_lost_under_attack(big_store):
    honest_writes_under_attack(big_store, seconds=3)


@pytest.mark.slow
def test_a_minute_of_attack_loses_nothing_and_never_freezes(big_store):
    honest_writes_under_attack(big_store, seconds=60)


OTHER_PEER = "127.0.0.2"  # loopback too, a peer of its own


def test_one_peer_cannot_take_every_data_connection(make_server):
    server = make_server(data_limits=DataLimits(max_connections=4, max_connections_per_peer=2,
                                                read_timeout=READ_TIMEOUT))
    worker = DataWorker(server.address)
    try:
        held = [worker.raw() for _ in range(2)]
        time.sleep(0.2)
        assert closed(worker.raw(), within=READ_TIMEOUT / 2)  # at once, not after the timeout
        assert _admitted_from(worker, OTHER_PEER)  # another address still gets in
        for stream in held:
            stream.close()
        deadline = time.monotonic() + ANSWER_WITHIN  # the closed ones are counted out
        while not _admitted_from(worker, "127.0.0.1"):
            assert time.monotonic() < deadline, "the peer's closed connections still count"
            time.sleep(0.1)
    finally:
        worker.close()


def _admitted_from(worker, source):
    """Whether a connection from `source` is admitted with a fresh ticket."""
    with socket.create_connection((worker.host, worker.port), timeout=10,
                                  source_address=(source, 0)) as stream:
        try:
            stream.sendall(worker.ticket().ticket)
            return read_status(stream).code == 0
        except ConnectionError:  # refused: closed without a status
            return False
