"""Reading a failed gRPC call in tests: its status code, its reason, its field violations."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from services.runtime.status import parse_status

Detail = TypeVar("Detail", bound=Message)


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code`; the error, for further checks."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        assert error.code() == code, (error.code(), error.details())
        return error
    raise AssertionError(f"expected {code}")


def detail(error: grpc.aio.AioRpcError, kind: type[Detail]) -> Detail | None:
    """The first google.rpc detail of `kind` the service attached, if any."""
    status = parse_status(error.trailing_metadata())
    assert status is not None
    for packed in status.details:
        found = kind()
        if packed.Unpack(found):
            return found
    return None


def reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason the service attached."""
    info = detail(error, error_details_pb2.ErrorInfo)
    return str(info.reason) if info else ""


def error_metadata(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The google.rpc.ErrorInfo metadata the service attached."""
    info = detail(error, error_details_pb2.ErrorInfo)
    return dict(info.metadata) if info else {}


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations, as (field, description) pairs."""
    bad = detail(error, error_details_pb2.BadRequest)
    return [(v.field, v.description) for v in bad.field_violations] if bad else []


def fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields the violations name."""
    return [field for field, _ in violations(error)]


def retry_after(error: grpc.aio.AioRpcError) -> float:
    """Seconds the google.rpc.RetryInfo asks the caller to wait (0 when there is none)."""
    hint = detail(error, error_details_pb2.RetryInfo)
    return float(hint.retry_delay.ToNanoseconds() / 1e9) if hint else 0.0
