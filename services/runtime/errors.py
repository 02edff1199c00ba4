"""Domain errors and their one translation to gRPC status codes with google.rpc details.

Domain code raises these; the error interceptor turns them into a status, once. The facade
turns the status into HTTP with its one table.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "stockfolio"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class DomainError(Exception):
    """A failure the caller can act on. `reason` is a stable machine-readable code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN)
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]


class InvalidArgument(DomainError):
    """Input that breaks a rule; each violation names its field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "VALIDATION_ERROR"

    def __init__(
        self, message: str, *, fields: Sequence[tuple[str, str]] = (), reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.fields = list(fields)

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls(f"{name}: {description}", fields=[(name, description)])

    def details(self) -> list[any_pb2.Any]:
        found = super().details()
        if self.fields:
            violations = [
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in self.fields
            ]
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.BadRequest(field_violations=violations))
            found.append(packed)
        return found


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class Conflict(DomainError):
    code = grpc.StatusCode.ABORTED
    reason = "CONFLICT"


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "FORBIDDEN"


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    """Too many requests; `retry_after` seconds tells the caller when to come back."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = max(0.0, retry_after)

    def details(self) -> list[any_pb2.Any]:
        found = super().details()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after * 1e9))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        found.append(packed)
        return found


def status_trailers(
    code: grpc.StatusCode, message: str, details: list[any_pb2.Any]
) -> tuple[tuple[str, bytes], ...]:
    """The `grpc-status-details-bin` trailer that carries a google.rpc.Status."""
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def to_status(error: DomainError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    return error.code, error.message, status_trailers(error.code, error.message, error.details())


def internal_status() -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    message = "internal error"
    code = grpc.StatusCode.INTERNAL
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))
    return code, message, status_trailers(code, message, [info])


def parse_status(trailing: Sequence[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    """The google.rpc.Status a server attached to a failed call, if any."""
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


__all__ = [
    "AlreadyExists",
    "Conflict",
    "DomainError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "internal_status",
    "parse_status",
    "to_status",
]
