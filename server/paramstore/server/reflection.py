"""Server reflection under both names clients ask for: `grpc.reflection.v1` and `v1alpha`.

grpcio-reflection serves only `grpc.reflection.v1alpha.ServerReflection`, while newer tools
(grpcurl, Postman, grpcui) ask for v1 first. The two protocols are the same messages field for
field; only the package differs. So one servicer answers both paths, and v1's file descriptor
(v1alpha's, renamed) joins the descriptor pool so that reflection can describe itself as v1
too. Reflection reveals the schema, never data: a read-only token may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
METHOD_PREFIXES = (f"/{V1_SERVICE}/", f"/{V1ALPHA_SERVICE}/")
_V1ALPHA_PACKAGE, _V1_PACKAGE = "grpc.reflection.v1alpha", "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(services: Iterable[str], server: grpc.Server) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `services` and themselves."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.ReflectionServicer((*services, V1_SERVICE, V1ALPHA_SERVICE))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": info}),))


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Add v1's reflection.proto to `pool`, built from v1alpha's (once per process)."""
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name, file.package = _V1_FILE, _V1_PACKAGE
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in file.message_type:
        for field in message.field:
            if field.type_name:  # messages only: setting it on a scalar makes it invalid
                field.type_name = field.type_name.replace(old, new, 1)
    for method in file.service[0].method:
        method.input_type = method.input_type.replace(old, new, 1)
        method.output_type = method.output_type.replace(old, new, 1)
    pool.Add(file)
