"""Requests aiohttp's HTTP parser refuses before any route runs (a header line over its 8190-byte
limit, too many headers, a request target too long, a request line or header name that is not
HTTP, a bad Content-Length, bad chunked encoding): each answered in the envelope, 431 / 414 /
400 as the RFCs name them, with a code and a sentence, and the connection closed after it, as
aiohttp closes it. Before, aiohttp answered these itself in plain text ("Got more than 8190
bytes when reading: b'aaaa...'."), echoing the request's bytes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.conftest import Client, FacadeInFront

WAIT = 10.0
LIMIT = 8190  # aiohttp's max_line_size and max_field_size, which the facade keeps


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # no service is called: the parser refuses these before any route


@pytest.fixture
async def facade(facade_in_front: FacadeInFront) -> AsyncIterator[Client]:
    async with facade_in_front({}) as client:
        yield client


async def exchange(client: Client, request: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send raw bytes, read until the server closes the connection (a timeout here means it
    stayed open), and return the status, the headers (lowercased names) and the JSON body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT)  # until EOF: the server closed
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (h.partition(": ") for h in lines)}
    assert headers.get("content-type", "").startswith("application/json"), answer[:400]
    envelope: dict[str, Any] = json.loads(body)
    return int(status_line.split(" ", 2)[1]), headers, envelope


def assert_envelope(envelope: dict[str, Any], headers: dict[str, str], code: str) -> None:
    assert envelope["success"] is False
    assert envelope["error"] == code
    assert envelope["service"] == "facade"
    assert envelope["timestamp"].endswith("Z")
    # A fresh id (the request's own headers are not to be trusted), sent as the header too.
    assert len(envelope["correlationId"]) == 32
    assert headers["x-correlation-id"] == envelope["correlationId"]
    assert headers["x-content-type-options"] == "nosniff"


async def test_a_header_value_of_20000_bytes_is_a_431_in_the_envelope(facade: Client) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    status, headers, envelope = await exchange(facade, request)
    assert status == 431, envelope
    assert_envelope(envelope, headers, "HEADERS_TOO_LARGE")
    assert envelope["message"] == f"a request header is longer than the limit of {LIMIT} bytes"


async def test_a_header_name_of_20000_bytes_is_a_431_in_the_envelope(facade: Client) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 20_000 + b": v\r\n\r\n"
    status, headers, envelope = await exchange(facade, request)
    assert status == 431, envelope
    assert_envelope(envelope, headers, "HEADERS_TOO_LARGE")
    assert envelope["message"] == f"a request header is longer than the limit of {LIMIT} bytes"


async def test_200_headers_are_a_431_naming_the_limit(facade: Client) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    status, headers, envelope = await exchange(
        facade, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    )
    assert status == 431, envelope
    assert_envelope(envelope, headers, "HEADERS_TOO_LARGE")
    assert envelope["message"] == "the request has more than 128 headers, the limit"


async def test_a_request_target_of_20000_bytes_is_a_414_in_the_envelope(facade: Client) -> None:
    request = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, envelope = await exchange(facade, request)
    assert status == 414, envelope
    assert_envelope(envelope, headers, "URI_TOO_LONG")
    assert envelope["message"] == f"the request target is longer than the limit of {LIMIT} bytes"


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        pytest.param(b"HELLO THERE\r\n\r\n", "Invalid method encountered", id="garbage-line"),
        pytest.param(
            b"GET /health HTTP/9.Z\r\nHost: x\r\n\r\n",
            "Bad status line: Invalid minor version",
            id="bad-version",
        ),
        pytest.param(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            "Invalid character in Content-Length",
            id="bad-content-length",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
            "Invalid header token",
            id="bad-header-name",
        ),
        pytest.param(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nabc\r\n0\r\n\r\n",
            "Invalid character in chunk size",
            id="bad-chunk-size",
        ),
    ],
)
async def test_a_request_that_is_not_http_is_a_400_saying_what_is_wrong(
    facade: Client, request_bytes: bytes, reason: str
) -> None:
    status, headers, envelope = await exchange(facade, request_bytes)
    assert status == 400, envelope
    assert_envelope(envelope, headers, "BAD_REQUEST")
    assert envelope["message"] == f"malformed HTTP request: {reason}"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET http://[SECRET HTTP/1.1\r\nHost: x\r\n\r\n", id="target"),
        pytest.param(b"GET http://user:SECRET@[::1 HTTP/1.1\r\nHost: x\r\n\r\n", id="credentials"),
        pytest.param(b"GET SECRET/x HTTP/1.1\r\nHost: x\r\n\r\n", id="relative"),
    ],
)
async def test_a_refused_request_target_is_not_echoed(facade: Client, request_bytes: bytes) -> None:
    status, headers, envelope = await exchange(facade, request_bytes)
    assert status == 400, envelope
    assert_envelope(envelope, headers, "BAD_REQUEST")
    assert "SECRET" not in json.dumps(envelope)
    assert envelope["message"] == "malformed HTTP request: invalid request target"


async def test_a_well_formed_request_on_the_same_facade_is_still_answered(facade: Client) -> None:
    # The override is only for what the parser refuses: routes answer as before.
    response = await facade.get("/no/such/route")
    body = await response.json()
    assert response.status == 404
    assert body["error"] == "NOT_FOUND"


async def test_another_aiohttp_server_in_the_process_keeps_aiohttps_answer(
    facade: Client,
) -> None:
    # The override is installed for the facade's app only (the web app server, the fakes and
    # the admin port answer as aiohttp does).
    other = web.Application()
    async with TestServer(other) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(b"HELLO THERE\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), WAIT)
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n"), answer
    assert b"Content-Type: text/plain" in answer
