"""The data channel under attack and under load: who gets in, what a bad step changes
(nothing), and that the server keeps serving the others.

A store "s" trains in async mode with two workers and no optimizer (a step's value is its
gradient) holding key "w" = zeros(4): `kv` steps through the SDK, and raw connections with
tickets for the other's rank (`raw_rank`) do what a hostile client would."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from certificates import Authority

from paramstore import nd, optimizer
from paramstore.client import connect, data_channel
from paramstore.client.errors import FailedPrecondition, PermissionDenied
from paramstore.proto import data_frames as frames
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.admission import CallLimits
from paramstore.server.auth import Token
from paramstore.server.data_channel import DataLimits
from paramstore.server.training import TrainingSession

LENGTH = frames.LENGTH
READ_TIMEOUT = 1.0
LIMITS = DataLimits(max_connections=4, read_timeout=READ_TIMEOUT, ticket_seconds=2.0)
SHAPE = (4,)


class Worker:
    """A joined worker of store "s", and raw connections to the server's data channel."""

    def __init__(self, address: str, **options: Any) -> None:
        self.address = address
        self.client = connect(address, **options)
        self.kv, self.other = (
            self.client.kvstore("s", mode="async", num_workers=2, timeout=20,
                                shared_memory=False) for _ in range(2))
        self.raw_rank = self.other.rank  # a joined rank that steps on raw connections only
        self.kv.init("w", nd.zeros(SHAPE))
        self.host = address.rsplit(":", 1)[0]
        try:
            self.port = self.ticket().port
        except FailedPrecondition:  # a server without a data channel
            self.port = 0

    def ticket(self, rank: int | None = None) -> pb.OpenDataChannelResponse:
        return self.client.call("OpenDataChannel", pb.OpenDataChannelRequest(
            store="s", rank=self.raw_rank if rank is None else rank))

    def raw(self, tls: ssl.SSLContext | None = None) -> socket.socket:
        stream = socket.create_connection((self.host, self.port), timeout=10)
        return tls.wrap_socket(stream, server_hostname=self.host) if tls else stream

    def admitted(self, rank: int | None = None) -> socket.socket:
        stream = self.raw()
        stream.sendall(self.ticket(rank).ticket)
        assert read_status(stream).code == 0
        return stream

    def weight(self) -> np.ndarray:
        return self.client.store("s").collect_params()["w"].data().asnumpy()

    def step(self, value: float) -> None:
        """One real step through the kvstore: "w" becomes `value` everywhere."""
        out = nd.zeros(SHAPE)
        self.kv.pushpull("w", nd.full(SHAPE, value), out=out)
        assert out.asnumpy().tolist() == [value] * 4

    def close(self) -> None:
        self.kv.close()
        self.other.close()
        self.client.close()


@pytest.fixture
def worker(make_server: Callable[..., Any]) -> Iterator[Worker]:
    server = make_server(data_limits=LIMITS, calls=CallLimits(idle_timeout=5.0))
    opened = Worker(server.address)
    yield opened
    opened.close()


def read_status(stream: socket.socket) -> pb.DataStatus:
    return frames.read_message(stream, pb.DataStatus)


def receive(stream: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = stream.recv(size - len(data))
        if not more:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += more
    return data


def closed(stream: socket.socket, within: float) -> bool:
    """Whether the server ends the connection within `within` seconds (sending nothing more)."""
    return last_words(stream, within) == b""


def last_words(stream: socket.socket, within: float) -> bytes | None:
    """What the server sends before it ends the connection within `within` seconds (None
    when it does not end it)."""
    deadline = time.monotonic() + within
    said = b""
    try:
        while time.monotonic() < deadline:
            stream.settimeout(max(deadline - time.monotonic(), 0.01))
            more = stream.recv(1 << 16)
            if not more:
                return said
            said += more
    except (ConnectionError, ssl.SSLError):
        return said
    except TimeoutError:
        pass
    return None


def header(begin: pb.PushBegin, *specs: pb.ParameterSpec) -> bytes:
    data = pb.DataStep(begin=begin, parameters=specs).SerializeToString()
    return LENGTH.pack(len(data)) + data


def spec(shape: tuple[int, ...] = SHAPE, dtype: str = "float32") -> pb.ParameterSpec:
    return pb.ParameterSpec(name="w", shape=shape, dtype=dtype, dtype_label=dtype,
                            kind="Parameter", has_data=True)


def begin(worker: Worker, step: int = 1, **fields: Any) -> pb.PushBegin:
    return pb.PushBegin(**{"store": "s", "rank": worker.raw_rank, "parameter_count": 1,
                           "step": step, **fields})


def gradient(value: float = 7.0) -> bytes:
    return np.full(SHAPE, value, np.float32).tobytes()


# ---- the channel works --------------------------------------------------------------------------


def test_a_worker_without_shared_memory_steps_through_the_data_channel(worker: Worker) -> None:
    worker.step(3.0)
    assert worker.kv.data_channel
    assert worker.weight().tolist() == [3.0] * 4


def test_a_raw_step_answers_the_new_value_after_an_ok_status(worker: Worker) -> None:
    stream = worker.admitted()
    stream.sendall(header(begin(worker), spec()) + gradient(5.0))
    assert read_status(stream).code == 0
    assert np.frombuffer(receive(stream, 16), np.float32).tolist() == [5.0] * 4
    stream.sendall(header(begin(worker, step=2, same_parameters=True)) + gradient(6.0))
    assert read_status(stream).code == 0
    assert np.frombuffer(receive(stream, 16), np.float32).tolist() == [6.0] * 4


def test_a_ranks_new_connection_replaces_its_last(worker: Worker) -> None:
    first = worker.admitted()
    second = worker.admitted()
    assert closed(first, within=3)
    second.sendall(header(begin(worker), spec()) + gradient(2.0))
    assert read_status(second).code == 0


def test_a_ranks_new_ticket_replaces_its_last(worker: Worker) -> None:
    old, new = worker.ticket().ticket, worker.ticket().ticket
    stream = worker.raw()
    stream.sendall(old)
    assert read_status(stream).code == 16
    stream = worker.raw()
    stream.sendall(new)
    assert read_status(stream).code == 0


def test_a_connection_idle_past_the_idle_timeout_is_closed_and_a_worker_reconnects(
        make_server: Callable[..., Any]) -> None:
    server = make_server(data_limits=LIMITS, calls=CallLimits(idle_timeout=1.0))
    joined = Worker(server.address)
    try:
        stream = joined.admitted()
        joined.step(1.0)
        time.sleep(1.5)  # past the server's idle timeout: the worker opens a new connection
        joined.step(2.0)
        assert joined.kv.data_channel
        assert closed(stream, within=1)
    finally:
        joined.close()


# ---- tickets ------------------------------------------------------------------------------------


def test_a_connection_that_sends_no_ticket_is_closed_after_the_read_timeout(
        worker: Worker) -> None:
    stream = worker.raw()
    started = time.monotonic()
    assert closed(stream, within=READ_TIMEOUT + 3)
    assert time.monotonic() - started >= READ_TIMEOUT * 0.9
    worker.step(1.0)


def test_a_wrong_ticket_is_refused_and_changes_nothing(worker: Worker) -> None:
    stream = worker.raw()
    stream.sendall(bytes(32))
    status = read_status(stream)
    assert (status.code, status.error_kind) == (16, "Unauthenticated")  # UNAUTHENTICATED
    assert closed(stream, within=3)
    assert worker.weight().tolist() == [0.0] * 4


def test_a_ticket_is_good_for_one_connection_only(worker: Worker) -> None:
    ticket = worker.ticket().ticket
    first, second = worker.raw(), worker.raw()
    first.sendall(ticket)
    assert read_status(first).code == 0
    second.sendall(ticket)
    assert read_status(second).code == 16
    assert closed(second, within=3)


def test_an_expired_ticket_is_refused(worker: Worker) -> None:
    ticket = worker.ticket()
    assert ticket.expires_seconds == LIMITS.ticket_seconds
    time.sleep(LIMITS.ticket_seconds + 0.2)
    stream = worker.raw()
    stream.sendall(ticket.ticket)
    assert read_status(stream).code == 16


def test_a_ticket_for_a_rank_that_is_not_joined_is_refused(worker: Worker) -> None:
    worker.other.close()  # gives the rank back
    with pytest.raises(FailedPrecondition, match="join again"):
        worker.ticket()


def test_a_read_only_token_gets_no_ticket(make_server: Callable[..., Any]) -> None:
    server = make_server(token=[Token("writer"), Token("reader", read_only=True)],
                         data_limits=LIMITS)
    joined = Worker(server.address, token="writer")
    try:
        with connect(server.address, token="reader") as reader, pytest.raises(PermissionDenied):
            reader.call("OpenDataChannel", pb.OpenDataChannelRequest(store="s",
                                                                     rank=joined.raw_rank))
    finally:
        joined.close()


def test_a_connection_is_bound_to_its_tickets_store_and_rank(worker: Worker) -> None:
    stream = worker.admitted()
    stream.sendall(header(begin(worker, rank=worker.kv.rank), spec()) + gradient())
    status = read_status(stream)
    assert (status.code, status.error_kind) == (3, "InvalidArgument")
    assert "carries rank" in status.message
    assert worker.weight().tolist() == [0.0] * 4


# ---- bad steps change nothing -------------------------------------------------------------------


def test_a_garbage_header_is_refused_and_the_server_serves_on(worker: Worker) -> None:
    stream = worker.admitted()
    stream.sendall(LENGTH.pack(8) + b"\xff" * 8)
    status = read_status(stream)
    assert status.code == 3 and "not a paramstore.v1.DataStep" in status.message
    assert closed(stream, within=3)
    assert worker.weight().tolist() == [0.0] * 4
    worker.step(2.0)


def test_an_oversized_header_is_refused_before_it_is_read(worker: Worker) -> None:
    stream = worker.admitted()
    stream.sendall(LENGTH.pack(1 << 31))
    status = read_status(stream)
    assert status.code == 3 and "over the" in status.message
    assert closed(stream, within=3)


@pytest.mark.parametrize("declared, code, kind", [
    (spec(shape=(1 << 40,)), 8, "ResourceExhausted"),  # over the tensor limit: 8 EiB
    (spec(shape=(8,)), 9, "FailedPrecondition"),  # not the key's shape
    (spec(dtype="float64"), 9, "FailedPrecondition"),
    (spec(dtype="complex64"), 3, "InvalidArgument"),
], ids=["too-big", "shape", "dtype", "bad-dtype"])
def test_a_step_declaring_what_the_key_cannot_take_changes_nothing(
        worker: Worker, declared: pb.ParameterSpec, code: int, kind: str) -> None:
    stream = worker.admitted()
    body = bytes(min(int(np.prod(declared.shape)) * 8, 1 << 16))
    stream.sendall(header(begin(worker), declared) + body)
    status = read_status(stream)
    assert (status.code, status.error_kind) == (code, kind), status.message
    assert worker.weight().tolist() == [0.0] * 4
    worker.step(4.0)


def test_a_step_over_the_inflight_byte_budget_is_refused(make_server: Callable[..., Any]) -> None:
    server = make_server(data_limits=LIMITS, calls=CallLimits(max_inflight_bytes=16))
    joined = Worker(server.address)
    try:
        # A connection of the other rank takes its step's 16 bytes while its body is awaited.
        holding = joined.admitted(joined.kv.rank)
        holding.sendall(header(begin(joined, rank=joined.kv.rank), spec()))
        time.sleep(0.2)
        stream = joined.admitted()
        stream.sendall(header(begin(joined), spec()) + gradient())
        status = read_status(stream)
        assert (status.code, status.error_kind) == (8, "ResourceExhausted")
        assert "in flight" in status.message
    finally:
        joined.close()


def test_a_step_cut_short_applies_nothing_and_others_train_on(worker: Worker) -> None:
    stream = worker.admitted()
    stream.sendall(header(begin(worker), spec()) + gradient()[:10])
    stream.close()
    time.sleep(0.3)
    assert worker.weight().tolist() == [0.0] * 4
    worker.step(9.0)
    assert worker.weight().tolist() == [9.0] * 4


# ---- stalls and floods --------------------------------------------------------------------------


def test_a_slowloris_header_is_closed_while_a_worker_trains(worker: Worker) -> None:
    stream = worker.admitted()
    whole = header(begin(worker), spec())
    done = threading.Event()
    steps = []

    def train() -> None:
        while not done.is_set():
            worker.step(float(len(steps)))
            steps.append(1)

    trainer = threading.Thread(target=train)
    trainer.start()
    started = time.monotonic()
    try:
        with pytest.raises(OSError):
            for byte in whole:
                stream.sendall(bytes([byte]))
                time.sleep(0.25)
                if time.monotonic() - started > READ_TIMEOUT + 3:
                    break
        assert time.monotonic() - started < READ_TIMEOUT + 3
    finally:
        done.set()
        trainer.join(20)
    assert steps


def test_a_body_trickling_in_is_closed_and_changes_nothing(worker: Worker) -> None:
    stream = worker.admitted()
    stream.sendall(header(begin(worker), spec()))
    started = time.monotonic()
    with pytest.raises(OSError):
        for byte in gradient():
            stream.sendall(bytes([byte]))
            time.sleep(0.25)
    assert time.monotonic() - started < READ_TIMEOUT + 3
    assert worker.weight().tolist() == [0.0] * 4
    worker.step(8.0)


def test_connections_beyond_the_cap_are_refused_and_workers_fall_back_to_grpc_for_a_while(
        worker: Worker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data_channel, "RETRY_SECONDS", 1.0)
    held = [worker.raw() for _ in range(LIMITS.max_connections)]
    time.sleep(0.2)
    refused = worker.raw()
    assert closed(refused, within=READ_TIMEOUT / 2)  # at once, not after the read timeout
    worker.kv._data.close()  # its next step needs a new connection, which is refused
    worker.step(5.0)
    assert not worker.kv.data_channel
    assert "go through gRPC" in caplog.text
    for stream in held:
        stream.close()
    time.sleep(1.2)  # the worker tries the channel again
    worker.step(6.0)
    assert worker.kv.data_channel


# ---- TLS, switched off, shutdown ---------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority("paramstore data channel CA")


def test_a_tls_server_runs_the_data_channel_on_tls_and_refuses_plaintext(
        make_server: Callable[..., Any], authority: Authority) -> None:
    server = make_server(tls=authority.issue_server().pair, data_limits=LIMITS)
    joined = Worker(server.address, tls=authority.cert)
    try:
        joined.step(2.0)
        assert joined.kv.data_channel
        plain = joined.raw()
        plain.sendall(joined.ticket().ticket)
        said = last_words(plain, within=3)
        assert said is not None and not said.startswith(LENGTH.pack(0))  # a TLS alert at most
        trusting = ssl.create_default_context(cadata=authority.cert.decode())
        secured = joined.raw(tls=trusting)
        secured.sendall(joined.ticket().ticket)
        assert read_status(secured).code == 0
    finally:
        joined.close()


def test_mutual_tls_needs_the_client_certificate_on_the_data_channel_too(
        make_server: Callable[..., Any], authority: Authority) -> None:
    server = make_server(tls=authority.issue_server().pair, tls_client_ca=authority.cert,
                         data_limits=LIMITS)
    joined = Worker(server.address, tls=authority.cert,
                    client_cert=authority.issue_client().pair)
    try:
        joined.step(2.0)
        assert joined.kv.data_channel
        anonymous = joined.raw(tls=ssl.create_default_context(cadata=authority.cert.decode()))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            anonymous.sendall(joined.ticket().ticket)
            read_status(anonymous)
    finally:
        joined.close()


def test_without_a_data_channel_steps_go_through_grpc(make_server: Callable[..., Any]) -> None:
    server = make_server(data_port=None)
    joined = Worker(server.address)
    try:
        joined.client.create_store("other")
        assert joined.client.call("JoinTraining", pb.JoinTrainingRequest(
            store="other", mode="async", num_workers=1)).data_port == 0
        joined.step(3.0)
        assert not joined.kv.data_channel
        assert joined.weight().tolist() == [3.0] * 4
        with pytest.raises(FailedPrecondition, match="no data channel"):
            joined.ticket()
    finally:
        joined.close()


def test_serve_data_port_off_keeps_steps_on_grpc(spawn_server: Callable[..., Any]) -> None:
    served = spawn_server(None, "--data-port", "off")
    joined = Worker(served.address)
    try:
        joined.step(1.0)
        assert not joined.kv.data_channel
    finally:
        joined.close()


def test_a_stopping_server_closes_idle_data_connections(
        make_server: Callable[..., Any]) -> None:
    server = make_server(data_limits=LIMITS)
    joined = Worker(server.address)
    try:
        stream = joined.admitted()
        server.server.stop(5)
        assert closed(stream, within=3)
    finally:
        joined.close()


@pytest.mark.parametrize("shared_memory", [False, True], ids=["data", "signal"])
def test_a_connection_cut_after_the_server_applied_a_step_is_retried_without_applying_twice(
        make_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        shared_memory: bool) -> None:
    server = make_server(data_limits=LIMITS)
    channel = server.server.data_channel
    calls = []
    push_pull = TrainingSession.push_pull

    def cut_the_second(session: TrainingSession, *args: Any, **kwargs: Any) -> Any:
        values = push_pull(session, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            channel.abort()  # the answer never leaves: the worker sends the step again
        return values

    monkeypatch.setattr(TrainingSession, "push_pull", cut_the_second)
    with server.connect() as client, \
            client.kvstore("d", num_workers=1, timeout=20, shared_memory=shared_memory) as kv:
        kv.init("w", nd.zeros(SHAPE))
        kv.set_optimizer(optimizer.SGD(learning_rate=1.0))
        out = nd.zeros(SHAPE)
        for _ in range(3):
            kv.pushpull("w", nd.ones(SHAPE), out=out)
        assert (kv.data_channel, kv.shared_memory) == (True, shared_memory)
    assert len(calls) == 4  # the cut step came twice, and was applied once
    assert out.asnumpy().tolist() == [-3.0] * 4


@pytest.mark.parametrize("port", ["70000", "x", "-2"])
def test_serve_refuses_a_data_port_that_is_not_one(
        port: str, capsys: pytest.CaptureFixture[str]) -> None:
    from paramstore.server.app import main

    with pytest.raises(SystemExit) as exited:
        main(["--data-port", port])
    assert exited.value.code == 2
    assert "is not a port (0-65535) or 'off'" in capsys.readouterr().err


def test_a_data_port_in_use_is_refused(make_server: Callable[..., Any]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(OSError):
        make_server(data_port=taken.getsockname()[1])
