"""Server reflection as grpcurl and grpcui use it: v1 (which they ask first) and v1alpha, for
any token, read-only ones included (reflection reveals the schema, never data).

The v1 client is a raw stub at v1's method path; its messages are v1alpha's, which are v1's
field for field (only the package differs), so what crosses the wire is a v1 client's bytes.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from paramstore.server.auth import Token

V1_INFO = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
SERVICES = {"paramstore.v1.ParamStore", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}


def ask_v1(channel: grpc.Channel, token: str | None = None,
           **request: object) -> reflection_pb2.ServerReflectionResponse:
    info = channel.stream_stream(
        V1_INFO, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    (reply,) = info(iter([reflection_pb2.ServerReflectionRequest(**request)]),
                    metadata=metadata, timeout=10)
    return reply


def described(reply: reflection_pb2.ServerReflectionResponse) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto()
    file.ParseFromString(reply.file_descriptor_response.file_descriptor_proto[0])
    return file


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as opened:
        yield opened


def test_v1_lists_the_services(channel):
    reply = ask_v1(channel, list_services="")
    assert {service.name for service in reply.list_services_response.service} == SERVICES


def test_v1_describes_paramstore(channel):
    file = described(ask_v1(channel, file_containing_symbol="paramstore.v1.ParamStore"))
    assert file.package == "paramstore.v1"
    (service,) = file.service
    assert {"Push", "Pull", "TakeSnapshot", "DiffSnapshots"} <= {m.name for m in service.method}


def test_v1_describes_itself_as_v1(channel):
    file = described(ask_v1(channel,
                            file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    assert file.package == "grpc.reflection.v1"
    assert file.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_v1alpha_still_answers(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) == SERVICES
    assert database.FindFileContainingSymbol("paramstore.v1.ParamStore").package == "paramstore.v1"


def test_a_read_only_token_may_reflect(make_server):
    guarded = make_server(token=[Token("writer"), Token("reader", read_only=True)])
    with grpc.insecure_channel(guarded.address) as opened:
        reply = ask_v1(opened, "reader", list_services="")
        assert {service.name for service in reply.list_services_response.service} == SERVICES
        with pytest.raises(grpc.RpcError) as refused:
            ask_v1(opened, None, list_services="")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
