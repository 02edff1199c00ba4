"""Requests aiohttp's HTTP parser refuses (a header over 8190 bytes, too many headers, a request
line or header that is not HTTP, a bad Content-Length or chunk size), answered in the envelope.

aiohttp answers those itself, before any route or middleware runs, through
`RequestHandler.handle_error`, in plain text that echoes the request's bytes. It offers no hook
for that answer (aio-libs/aiohttp#3287, open), and `web.Server` builds `RequestHandler` by name,
so no subclass can be passed to `AppRunner` or the tests' `TestServer`. Hence one override of
`handle_error`, installed by `create_app` (the path `python -m facade`, the tests and the
benches share), for the facade's own app only: any other aiohttp server in the process keeps
aiohttp's answer. aiohttp's handler still runs first: it logs, refuses a second response once
one has begun, and its status and closing of the connection are kept, refined to 431 for a
header too large and 414 for a request target too long (RFC 6585, RFC 9110).
"""

from __future__ import annotations

import re
import weakref

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from facade.envelope import HTTP_CODES, ApiError, failure
from services.runtime.context import correlation_id, new_correlation_id

_aiohttp_handle_error = RequestHandler.handle_error
_enveloped: weakref.WeakSet[web.Application] = weakref.WeakSet()
# The pure-Python parser reports a request line too long as the line itself ("GET /aaa...").
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ ")
_REASON_LENGTH = 200
# aiohttp's own sentences ("Invalid character in Content-Length") are words and spaces.
_PLAIN_WORDS = re.compile(r"[A-Za-z][A-Za-z0-9 :-]*")
_FIXED_REASONS: dict[type[HttpProcessingError], str] = {
    InvalidURLError: "invalid request target",
    BadStatusLine: "invalid request line",
    InvalidHeader: "invalid header",
}


def envelope_protocol_errors(app: web.Application) -> None:
    """Answer what the parser refuses on `app`'s connections in the envelope."""
    _enveloped.add(app)
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]


def _handle_error(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    plain = _aiohttp_handle_error(self, request, status, exc, message)  # logs; may raise
    if not _serves_enveloped_app(self):
        return plain
    # No header of this request is to be trusted (they may be what failed): a fresh id.
    cid = new_correlation_id()
    token = correlation_id.set(cid)
    try:
        response = failure(_api_error(self, status, exc))
    finally:
        correlation_id.reset(token)
    response.headers["X-Correlation-ID"] = cid
    response.force_close()  # as aiohttp does: the stream cannot be trusted past this point
    return response


def _serves_enveloped_app(handler: RequestHandler) -> bool:
    # The connection's server calls its app's `_handle`: that bound method names the app.
    # (`_manager` is None only once the connection is lost, after any error is answered.)
    server = handler._manager
    app = getattr(server.request_handler, "__self__", None) if server is not None else None
    return isinstance(app, web.Application) and app in _enveloped


def _api_error(handler: RequestHandler, status: int, exc: BaseException | None) -> ApiError:
    if isinstance(exc, LineTooLong):
        if _is_request_line(exc):
            limit = handler.max_line_size
            return ApiError(
                414, "URI_TOO_LONG", f"the request target is longer than the limit of {limit} bytes"
            )
        limit = handler.max_field_size
        return ApiError(
            431, "HEADERS_TOO_LARGE", f"a request header is longer than the limit of {limit} bytes"
        )
    if isinstance(exc, BadHttpMessage) and exc.message == "Too many headers received":
        return ApiError(
            431,
            "HEADERS_TOO_LARGE",
            f"the request has more than {handler.max_headers} headers, the limit",
        )
    if status < 500 and isinstance(exc, HttpProcessingError):
        code = HTTP_CODES.get(status, "BAD_REQUEST")
        return ApiError(status, code, f"malformed HTTP request: {_reason(exc)}")
    # A handler's exception or timeout that reached aiohttp (the edge catches them first).
    return ApiError(status, "INTERNAL", "internal error")


def _is_request_line(exc: LineTooLong) -> bool:
    line = exc.args[0] if exc.args else b""
    # The C parser reports a request target too long from its URL buffer, the one bytearray it
    # reports (header names and values are bytes).
    if isinstance(line, bytearray):
        return True
    return isinstance(line, bytes) and _REQUEST_LINE.match(line) is not None


def _reason(exc: HttpProcessingError) -> str:
    """aiohttp's reason without the request bytes it quotes: "Invalid header token:\\n\\n  b'..'
    \\n  ^" is "Invalid header token". A reason that still holds some of the request (a
    target's credentials in "http://user:secret@[..."), or any character beyond plain words,
    is said in a fixed sentence instead."""
    reason = " ".join(exc.message.split("\n\n", 1)[0].split()).rstrip(":.")
    # An invalid target's message is the target itself, whatever its characters.
    plain = _PLAIN_WORDS.fullmatch(reason) is not None and not isinstance(exc, InvalidURLError)
    if not plain or len(reason) > _REASON_LENGTH:
        return _FIXED_REASONS.get(type(exc), "not valid HTTP")
    return reason
