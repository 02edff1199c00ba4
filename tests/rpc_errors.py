"""Reading a failed gRPC call in tests: its status code, its reason, its field violations."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from services.runtime.status import parse_status


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code`; the error, for further checks."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        assert error.code() == code, (error.code(), error.details())
        return error
    raise AssertionError(f"expected {code}")


def reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason the service attached."""
    status = parse_status(error.trailing_metadata())
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations, as (field, description) pairs."""
    status = parse_status(error.trailing_metadata())
    assert status is not None
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return [(v.field, v.description) for v in bad.field_violations]
    return []


def fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields the violations name."""
    return [field for field, _ in violations(error)]


def retry_after(error: grpc.aio.AioRpcError) -> float:
    """Seconds the google.rpc.RetryInfo asks the caller to wait (0 when there is none)."""
    status = parse_status(error.trailing_metadata())
    assert status is not None
    for detail in status.details:
        hint = error_details_pb2.RetryInfo()
        if detail.Unpack(hint):
            return float(hint.retry_delay.ToNanoseconds() / 1e9)
    return 0.0
