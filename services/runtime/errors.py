"""Domain errors: plain exceptions with a stable reason and the data a caller can act on.

They know no transport. Domain code raises them; status.py maps them, once, to gRPC status
codes with google.rpc details for the error interceptor; the facade maps those to HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum


class Kind(Enum):
    """What sort of failure an error is, in words any transport can map (status.py does)."""

    INVALID_ARGUMENT = "invalid argument"
    FAILED_PRECONDITION = "failed precondition"
    NOT_FOUND = "not found"
    ALREADY_EXISTS = "already exists"
    CONFLICT = "conflict"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission denied"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource exhausted"
    INTERNAL = "internal"


class DomainError(Exception):
    """A failure the caller can act on. `reason` is a stable machine-readable code; `data`
    holds what else the caller may need (the current sha of a file changed under them)."""

    kind: Kind = Kind.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self, message: str, *, reason: str | None = None, data: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.data = dict(data or {})
        if reason is not None:
            self.reason = reason

    def __init_subclass__(cls, *, kind: Kind | None = None, **kwargs: object) -> None:
        """`class NotFound(DomainError, kind=Kind.NOT_FOUND)`: a subclass that names its kind
        gets the kind's name as its reason unless its body gives another."""
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind
            if "reason" not in cls.__dict__:
                cls.reason = kind.name


class InvalidArgument(DomainError, kind=Kind.INVALID_ARGUMENT):
    """Input that breaks a rule; each violation names its field."""

    reason = "VALIDATION_ERROR"

    def __init__(
        self, message: str, *, fields: Sequence[tuple[str, str]] = (), reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.fields = list(fields)

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls(f"{name}: {description}", fields=[(name, description)])


class FailedPrecondition(DomainError, kind=Kind.FAILED_PRECONDITION): ...


class NotFound(DomainError, kind=Kind.NOT_FOUND): ...


class AlreadyExists(DomainError, kind=Kind.ALREADY_EXISTS): ...


class Conflict(DomainError, kind=Kind.CONFLICT): ...


class Unauthenticated(DomainError, kind=Kind.UNAUTHENTICATED): ...


class PermissionDenied(DomainError, kind=Kind.PERMISSION_DENIED):
    reason = "FORBIDDEN"


class Unavailable(DomainError, kind=Kind.UNAVAILABLE): ...


class ResourceExhausted(DomainError, kind=Kind.RESOURCE_EXHAUSTED):
    """Too many requests; `retry_after` seconds tells the caller when to come back."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = max(0.0, retry_after)


__all__ = [
    "AlreadyExists",
    "Conflict",
    "DomainError",
    "FailedPrecondition",
    "InvalidArgument",
    "Kind",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]
