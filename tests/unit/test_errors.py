"""Domain errors are plain exceptions; status.py translates them once into gRPC status codes
with google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.runtime.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    Kind,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.runtime.status import (
    CODES,
    STATUS_DETAILS_KEY,
    internal_status,
    parse_status,
    to_status,
)


def unpack(status: status_pb2.Status) -> list[object]:
    """Each detail of a status, unpacked into its message type."""
    found: list[object] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR"),
        (FailedPrecondition("bad"), grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
        (NotFound("bad"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (AlreadyExists("bad"), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
        (Conflict("bad"), grpc.StatusCode.ABORTED, "CONFLICT"),
        (Unauthenticated("bad"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (PermissionDenied("bad"), grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN"),
        (Unavailable("bad"), grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
        (
            ResourceExhausted("bad", retry_after=1),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
        ),
        (DomainError("bad"), grpc.StatusCode.INTERNAL, "INTERNAL"),
    ],
)
def test_each_domain_error_maps_to_its_grpc_code_and_reason(
    error: DomainError, code: grpc.StatusCode, reason: str
) -> None:
    status_code, message, trailers = to_status(error)
    assert (status_code, message) == (code, "bad")
    status = parse_status(trailers)
    assert status is not None
    assert (status.code, status.message) == (code.value[0], "bad")
    info = unpack(status)[0]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, "stockfolio")


def test_a_reason_given_at_the_raise_site_replaces_the_default() -> None:
    _, _, trailers = to_status(Unauthenticated("token expired", reason="TOKEN_EXPIRED"))
    status = parse_status(trailers)
    assert status is not None
    info = unpack(status)[0]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "TOKEN_EXPIRED"
    assert Unauthenticated("other").reason == "UNAUTHENTICATED", "the class default is untouched"


def test_invalid_argument_carries_a_field_violation_per_field() -> None:
    error = InvalidArgument(
        "two fields are wrong",
        fields=[("email", "must be an email address"), ("password", "at least 8 characters")],
    )
    status = parse_status(to_status(error)[2])
    assert status is not None
    _, bad_request = unpack(status)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("email", "must be an email address"),
        ("password", "at least 8 characters"),
    ]


def test_invalid_argument_for_one_field_names_it_in_the_message_and_the_details() -> None:
    error = InvalidArgument.field("quantity", "must be positive")
    assert error.message == "quantity: must be positive"
    status = parse_status(to_status(error)[2])
    assert status is not None
    bad_request = unpack(status)[1]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("quantity", "must be positive")
    ]


def test_invalid_argument_without_fields_has_no_bad_request_detail() -> None:
    status = parse_status(to_status(InvalidArgument("nothing to change"))[2])
    assert status is not None
    assert [type(d).__name__ for d in unpack(status)] == ["ErrorInfo"]


def test_resource_exhausted_carries_retry_info() -> None:
    status = parse_status(to_status(ResourceExhausted("slow down", retry_after=12.5))[2])
    assert status is not None
    retry = unpack(status)[1]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 12_500_000_000


def test_a_negative_retry_after_becomes_zero() -> None:
    assert ResourceExhausted("now", retry_after=-3).retry_after == 0.0


def test_an_errors_data_becomes_the_error_infos_metadata() -> None:
    error = Conflict("changed", reason="SHA_MISMATCH", data={"sha": "abc123"})
    status = parse_status(to_status(error)[2])
    assert status is not None
    (info,) = unpack(status)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, dict(info.metadata)) == ("SHA_MISMATCH", {"sha": "abc123"})


def test_an_error_may_name_its_own_kind_and_the_one_table_maps_it() -> None:
    class TooBig(DomainError):
        kind = Kind.RESOURCE_EXHAUSTED
        reason = "TOO_BIG"

    code, _, trailers = to_status(TooBig("the file is too big"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = parse_status(trailers)
    assert status is not None
    assert [type(d).__name__ for d in unpack(status)] == ["ErrorInfo"]


def test_every_kind_has_a_status_code() -> None:
    assert set(CODES) == set(Kind)


def test_parse_status_round_trips_what_the_trailers_carry() -> None:
    _, message, trailers = to_status(NotFound("portfolio p-1 not found"))
    ((key, value),) = trailers
    assert key == STATUS_DETAILS_KEY
    assert isinstance(value, bytes)
    status = parse_status([("x-other", "1"), (key, value)])
    assert status == status_pb2.Status.FromString(value)
    assert (status.code, status.message) == (grpc.StatusCode.NOT_FOUND.value[0], message)


def test_parse_status_finds_nothing_where_nothing_was_attached() -> None:
    assert parse_status(None) is None
    assert parse_status([]) is None
    assert parse_status([("x-correlation-id", "abc")]) is None


def test_unexpected_errors_become_internal_without_internals() -> None:
    code, message, trailers = internal_status()
    assert (code, message) == (grpc.StatusCode.INTERNAL, "internal error")
    status = parse_status(trailers)
    assert status is not None
    info = unpack(status)[0]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "INTERNAL"
    assert len(status.details) == 1
