"""A mutating call retried with its request id is applied once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from chapter_nets import mlp
from service_types import RunningServer

from paramstore.proto import wire
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc
from paramstore.server.request_ids import RequestIds


def _stub(server: RunningServer) -> pb_grpc.ParamStoreStub:
    return pb_grpc.ParamStoreStub(grpc.insecure_channel(server.address))


def test_a_snapshot_retried_with_its_request_id_is_taken_once(server: RunningServer) -> None:
    with server.connect() as client:
        client.create_store("mlp").push(mlp().collect_params())
        stub = _stub(server)
        metadata = ((wire.REQUEST_ID_KEY, "retried-snapshot"),)
        first = stub.TakeSnapshot(pb.TakeSnapshotRequest(store="mlp", step=1), metadata=metadata)
        again = stub.TakeSnapshot(pb.TakeSnapshotRequest(store="mlp", step=1), metadata=metadata)
        assert again.id == first.id
        assert [info.id for info in client.store("mlp").snapshots()] == [first.id]
        other = stub.TakeSnapshot(pb.TakeSnapshotRequest(store="mlp", step=1),
                                  metadata=((wire.REQUEST_ID_KEY, "another"),))
        assert other.id != first.id


def test_a_snapshot_retried_after_a_restart_is_recognised_from_its_record(
        make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    first_server = make_server(data_dir=data)
    with first_server.connect() as client:
        client.create_store("mlp").push(mlp().collect_params())
    metadata = ((wire.REQUEST_ID_KEY, "before-the-restart"),)
    first = _stub(first_server).TakeSnapshot(pb.TakeSnapshotRequest(store="mlp"),
                                             metadata=metadata)
    assert first_server.server is not None
    first_server.server.stop(None).wait()
    second_server = make_server(data_dir=data)  # remembers no reply: finds the record
    again = _stub(second_server).TakeSnapshot(pb.TakeSnapshotRequest(store="mlp"),
                                              metadata=metadata)
    assert again.id == first.id
    with second_server.connect() as client:
        assert len(client.store("mlp").snapshots()) == 1


def test_a_failed_call_retried_with_its_request_id_runs_again(server: RunningServer) -> None:
    stub = _stub(server)
    metadata = ((wire.REQUEST_ID_KEY, "create-after-a-failure"),)
    try:
        stub.TakeSnapshot(pb.TakeSnapshotRequest(store="later"), metadata=metadata)
        raise AssertionError("a snapshot of a missing store succeeded")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
    with server.connect() as client:
        client.create_store("later").push(mlp().collect_params())
    assert stub.TakeSnapshot(pb.TakeSnapshotRequest(store="later"), metadata=metadata).id


def test_one_request_id_racing_from_threads_is_applied_once(server: RunningServer) -> None:
    with server.connect() as client:
        client.create_store("mlp").push(mlp().collect_params())
    stub = _stub(server)
    metadata = ((wire.REQUEST_ID_KEY, "sent-eight-times-at-once"),)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(
            lambda _: stub.TakeSnapshot(pb.TakeSnapshotRequest(store="mlp"), metadata=metadata),
            range(8)))
    assert {reply.id for reply in replies} == {replies[0].id}
    with server.connect() as client:
        assert [info.id for info in client.store("mlp").snapshots()] == [replies[0].id]


def test_long_request_ids_that_share_a_prefix_are_different_requests(
        server: RunningServer) -> None:
    with server.connect() as client:
        client.create_store("mlp").push(mlp().collect_params())
    stub = _stub(server)
    prefix = "x" * 4000
    ids = [stub.TakeSnapshot(pb.TakeSnapshotRequest(store="mlp"),
                             metadata=((wire.REQUEST_ID_KEY, prefix + end),)).id
           for end in ("a", "b", "a")]
    assert ids[0] != ids[1] and ids[2] == ids[0]


def test_replies_kept_for_retries_are_bounded_in_bytes() -> None:
    kept = RequestIds(capacity=1000, max_bytes=4 << 20)
    reply = pb.InitializeResponse(initialized=["x" * 1000] * 1000)  # 1 MB: a big initialize
    for number in range(20):
        kept.run("Initialize", f"call-{number}", lambda: reply)
    ran_again: list[str] = []

    def again(identifier: str) -> pb.InitializeResponse:
        return kept.run("Initialize", identifier,
                        lambda: ran_again.append(identifier) or pb.InitializeResponse())

    assert again("call-19") is reply  # the newest are answered from what was kept
    assert again("call-0").initialized == []  # the oldest went to keep the bytes bounded
    assert ran_again == ["call-0"]


def test_a_reply_bigger_than_the_bound_is_not_kept_and_keeps_the_others() -> None:
    kept = RequestIds(max_bytes=1 << 20)
    small = pb.PushResponse(version=7)
    kept.run("Push", "small", lambda: small)
    kept.run("Initialize", "huge", lambda: pb.InitializeResponse(initialized=["x" * (2 << 20)]))
    assert kept.run("Push", "small", pb.PushResponse) is small
    assert kept.run("Initialize", "huge", pb.InitializeResponse).initialized == []
