"""The one translation of domain errors (errors.py) into gRPC status codes with google.rpc
details, for the error interceptor; and the reading of those details back from a failed call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from services.runtime.errors import DomainError, InvalidArgument, Kind, ResourceExhausted

ERROR_DOMAIN = "stockfolio"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

CODES: Mapping[Kind, grpc.StatusCode] = {
    Kind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Kind.CONFLICT: grpc.StatusCode.ABORTED,
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Kind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.INTERNAL: grpc.StatusCode.INTERNAL,
}

Trailers = tuple[tuple[str, bytes], ...]


def status_code(error: DomainError) -> grpc.StatusCode:
    return CODES[error.kind]


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def details(error: DomainError) -> list[any_pb2.Any]:
    """ErrorInfo (reason, and the error's data as metadata); BadRequest with a violation per
    field of an InvalidArgument; RetryInfo for ResourceExhausted."""
    found = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.data
            )
        )
    ]
    if isinstance(error, InvalidArgument) and error.fields:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in error.fields
        ]
        found.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(error, ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        found.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return found


def status_trailers(code: grpc.StatusCode, message: str, found: list[any_pb2.Any]) -> Trailers:
    """The `grpc-status-details-bin` trailer that carries a google.rpc.Status."""
    status = status_pb2.Status(code=code.value[0], message=message, details=found)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def to_status(error: DomainError) -> tuple[grpc.StatusCode, str, Trailers]:
    code = status_code(error)
    return code, error.message, status_trailers(code, error.message, details(error))


def internal_status() -> tuple[grpc.StatusCode, str, Trailers]:
    return to_status(DomainError("internal error"))


def parse_status(trailing: Sequence[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    """The google.rpc.Status a server attached to a failed call, if any."""
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None
