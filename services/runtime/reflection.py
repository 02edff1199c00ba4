"""Server reflection under both names grpcurl and buf curl ask for.

grpcio-reflection 1.85 ships only v1alpha. The v1 service has identical messages under another
package name, so the v1alpha servicer serves both: a generic handler routes v1's one method to
it with v1alpha's (wire-identical) serializers.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"


def add_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    # Only v1alpha is listed: its descriptor is in the pool, while v1 has none to describe.
    servicer = ReflectionServicer([*service_names, V1ALPHA])
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for name in (V1ALPHA, V1):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler}),)
        )
