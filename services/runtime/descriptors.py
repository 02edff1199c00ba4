"""What the protos declare about each RPC: its auth rule and whether it is safe to retry.

Rules are read from the descriptors at start, so they are written once, beside the RPC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from stockfolio.options.v1 import auth_pb2

_RETRY_SAFE = {
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
}


@dataclass(frozen=True)
class MethodRule:
    public: bool
    required_role: str
    idempotent: bool
    internal: bool = False
    lapsed_token: bool = False


def method_path(method: MethodDescriptor) -> str:
    """The HTTP/2 path gRPC uses for a method: `/package.Service/Method`."""
    return f"/{method.containing_service.full_name}/{method.name}"


def method_rule(method: MethodDescriptor) -> MethodRule:
    options = method.GetOptions()
    auth = options.Extensions[auth_pb2.auth]
    return MethodRule(
        public=auth.public,
        required_role=auth.required_role,
        idempotent=options.idempotency_level in _RETRY_SAFE,
        internal=auth.internal,
        lapsed_token=auth.lapsed_token,
    )


def method_rules(services: Iterable[ServiceDescriptor]) -> dict[str, MethodRule]:
    return {method_path(m): method_rule(m) for s in services for m in s.methods}
