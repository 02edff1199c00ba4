"""The seed's JSON envelope for every response, and the one gRPC -> HTTP status table.

Success: `{success: true, data, timestamp, correlationId, service}` (+ `pagination` on lists).
Failure, as the seed's `ApiResponse` has it (`error?: string`): `{success: false, error: CODE,
message, details?: {fields?, retryAfter?, ...}, timestamp, correlationId, service}` - `error` the
machine code, `message` the human sentence, everything richer under `details` (field violations,
the retry hint, and the service's google.rpc.ErrorInfo metadata: a current sha, quota usage).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from aiohttp import web
from google.rpc import error_details_pb2
from multidict import CIMultiDict

from services.runtime.context import correlation_id
from services.runtime.status import parse_status

log = logging.getLogger("stockfolio.facade")

FACADE = "facade"
JSON = "application/json"
# Headers every response carries (the edge middleware adds them where a handler did not).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-site"),
    ("Cache-Control", "no-store"),
    # JSON needs nothing from a browser; pages that do (the /docs page) set their own.
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)
# Envelope responses start from this block: one copy, rather than one insert per header.
_ENVELOPE_HEADERS: CIMultiDict[str] = CIMultiDict([("Content-Type", JSON), *SECURITY_HEADERS])

# The one table (DESIGN.md, FIELD-NOTES.md); a code missing here is a 500.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Reasons that name an HTTP status more precisely than their gRPC code does (a service says
# INVALID_ARGUMENT with reason PAYLOAD_TOO_LARGE for a write over its limit: 413, not 422),
# or, where one reason answers differently by code, by (reason, code): a workspace over its byte
# quota is 413, over its file-count quota (FAILED_PRECONDITION) the usual 422.
REASON_STATUS: Mapping[str | tuple[str, grpc.StatusCode], int] = {
    "PAYLOAD_TOO_LARGE": 413,
    ("QUOTA_EXCEEDED", grpc.StatusCode.RESOURCE_EXHAUSTED): 413,
}
# When the service itself did not answer, gRPC's own text names addresses: say this instead.
_TRANSPORT_MESSAGES: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "the {service} service is unavailable; retry shortly",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the {service} service did not answer in time",
    grpc.StatusCode.CANCELLED: "the request was cancelled",
}
# Codes for HTTP errors raised by aiohttp itself (unknown route, wrong method, body too large).
HTTP_CODES: Mapping[int, str] = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    431: "HEADERS_TOO_LARGE",
}


class ApiError(Exception):
    """A failure answered in the envelope; raised anywhere in the facade, rendered once."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Sequence[tuple[str, str]] = (),
        retry_after: float | None = None,
        service: str = FACADE,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.retry_after = retry_after
        self.service = service
        self.headers = headers
        # The service's google.rpc.ErrorInfo metadata (e.g. a file's current sha on a conflict).
        self.details = details

    @classmethod
    def validation(cls, field: str, description: str) -> ApiError:
        return cls(422, "VALIDATION_ERROR", f"{field} {description}", fields=[(field, description)])


def now() -> str:
    """RFC 3339, UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def success(
    data: Any,
    *,
    service: str = FACADE,
    status: int = 200,
    pagination: Mapping[str, int] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "success": True,
        "data": data,
        "timestamp": now(),
        "correlationId": correlation_id.get(),
        "service": service,
    }
    if pagination is not None:
        body["pagination"] = pagination
    return web.Response(body=_dump(body), status=status, headers=_ENVELOPE_HEADERS)


def error_detail(error: ApiError) -> dict[str, Any]:
    """The envelope's error part, `{error: CODE, message, details?}`: also the record that ends a
    failed stream."""
    detail: dict[str, Any] = {"error": error.code, "message": error.message}
    richer: dict[str, Any] = dict(error.details or {})
    if error.fields:
        richer["fields"] = [{"field": f, "description": d} for f, d in error.fields]
    if error.retry_after is not None:
        richer["retryAfter"] = max(1, math.ceil(error.retry_after))
    if richer:
        detail["details"] = richer
    return detail


def failure(error: ApiError, *, data: Any = None) -> web.Response:
    detail = error_detail(error)
    headers = _ENVELOPE_HEADERS.copy()
    headers.update(error.headers or {})
    retry_after = detail.get("details", {}).get("retryAfter")
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body: dict[str, Any] = {"success": False}
    if data is not None:
        body["data"] = data
    body.update(detail)
    body.update(timestamp=now(), correlationId=correlation_id.get(), service=error.service)
    return web.Response(body=_dump(body), status=error.status, headers=headers)


def from_http_exception(error: web.HTTPException, *, max_body: int) -> ApiError:
    """aiohttp's own 404/405/413... as envelope errors."""
    status = error.status
    headers: dict[str, str] = {}
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(error.allowed_methods))
        headers["Allow"] = allowed
        message = f"{error.method} is not allowed here; allowed: {allowed}"
    elif status == 404:
        message = "no such route"
    elif status == 413:
        message = f"the request body is larger than the limit of {_size(max_body)}"
    else:
        message = error.reason
    code = HTTP_CODES.get(status, "INTERNAL" if status >= 500 else "BAD_REQUEST")
    return ApiError(status, code, message, headers=headers)


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    return f"{limit} bytes"


def from_rpc_error(error: grpc.aio.AioRpcError, service: str) -> ApiError:
    """A failed call as the envelope error: the service's reason, fields and retry hint."""
    code: grpc.StatusCode = error.code()
    status = parse_status(error.trailing_metadata())
    reason = ""
    fields: list[tuple[str, str]] = []
    retry_after: float | None = None
    metadata: dict[str, str] = {}
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata.update(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            hint = error_details_pb2.RetryInfo()
            detail.Unpack(hint)
            retry_after = hint.retry_delay.ToNanoseconds() / 1e9
    http = (
        REASON_STATUS.get((reason, code)) or REASON_STATUS.get(reason) or HTTP_STATUS.get(code, 500)
    )
    answered = status is not None or code not in _TRANSPORT_MESSAGES
    if http == 500:
        log.error(
            "service failed",
            extra={"upstream": service, "code": code.name, "details": error.details()},
        )
        return ApiError(500, reason or "INTERNAL", "internal error", service=service)
    if answered:
        message = error.details() or code.name.lower().replace("_", " ")
    else:
        log.warning(
            "service unreachable",
            extra={"upstream": service, "code": code.name, "details": error.details()},
        )
        message = _TRANSPORT_MESSAGES[code].format(service=service)
    return ApiError(
        http,
        reason or code.name,
        message,
        fields=fields,
        retry_after=retry_after,
        service=service if answered else FACADE,
        details=metadata or None,
    )
