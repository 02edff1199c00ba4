"""The facade on input that is odd but reaches it: a body that stops arriving, enum values
in Unicode digits, headers that are not UTF-8 or ASCII, a body whose encoding fails, socket
frames holding lone surrogates, addresses rotated within one IPv6 /64: each answered with a
clear 4xx (or a refused frame), never a 500, a hang or a closed socket (the README's contract:
"The facade: REST conventions", "Streams and WebSockets"; each failed before; found by a
review)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType

from services.runtime.config import RuntimeConfig
from tests.integration.conftest import Client, FacadeInFront
from tests.integration.rest_client import register

WAIT = 10.0


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the users service on SQLite only: storage is not what is reviewed


async def raw_exchange(client: Client, head: bytes, *, within: float = WAIT) -> tuple[bytes, float]:
    """Send raw bytes (what aiohttp's client will not send), read the answer (b"" if none came
    within `within` s) and how long it took."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    started = time.monotonic()
    try:
        writer.write(head)
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(65536), within)
        except TimeoutError:
            answer = b""
        return answer, time.monotonic() - started
    finally:
        writer.close()


def status_and_body(answer: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.fixture
async def facade(facade_in_front: FacadeInFront) -> AsyncIterator[Client]:
    """The facade with every service down: all these inputs are judged before any call."""
    async with facade_in_front({}) as client:
        yield client


# --- odd input answered 500 ------------------------------------------------------------------


async def test_an_enum_query_value_made_of_a_unicode_digit_is_a_422_not_a_500(
    facade: Client,
) -> None:
    # "²" (superscript two): str.isdigit() says yes, int() says no (facade/plans.py:65-66).
    response = await facade.get("/api/v1/trades", params={"side": "\u00b2"})
    body = await response.json()
    assert response.status == 422, body
    assert body["details"]["fields"][0]["field"] == "side"


async def test_an_enum_body_value_made_of_a_unicode_digit_is_a_422_not_a_500(
    facade: Client,
) -> None:
    response = await facade.post(
        "/api/v1/trades",
        json={"portfolioId": "p", "symbol": "AAPL", "side": "\u2460", "quantity": "1"},
    )
    body = await response.json()
    assert response.status == 422, body
    assert body["details"]["fields"][0]["field"] == "side"


async def test_an_upload_whose_content_type_is_not_utf8_is_a_4xx_not_a_500(
    facade: Client,
) -> None:
    answer, _ = await raw_exchange(
        facade,
        b"POST /api/v1/files:upload?path=a.txt HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: text/\xff\r\nContent-Length: 3\r\n\r\nabc",
    )
    status, _, body = status_and_body(answer)
    assert status == 400, body
    assert b"Content-Type header must be ASCII" in body


async def test_a_gzip_body_that_does_not_inflate_is_a_400_not_a_500(facade: Client) -> None:
    body = b'{"name": "Main"}'  # declared gzip, but plain JSON
    answer, _ = await raw_exchange(
        facade,
        b"POST /api/v1/portfolios HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    status, _, text = status_and_body(answer)
    assert status == 400, text
    assert b"cannot be read as sent" in text


async def test_a_non_ascii_bearer_token_is_a_4xx_not_a_500_with_the_api_limit_on(
    facade_in_front: FacadeInFront,
) -> None:
    # RATE_LIMIT_API's default (the test fixture turns it off); the same header with the limit
    # off is a 400 BAD_REQUEST from forwarded_metadata.
    async with facade_in_front({}, RATE_LIMIT_API="6000/minute") as client:
        answer, _ = await raw_exchange(
            client,
            b"GET /api/v1/portfolios HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\r\n\r\n",
        )
    status, _, body = status_and_body(answer)
    assert 400 <= status < 500, body


# --- a request body that stops arriving ------------------------------------------------------


async def test_a_json_body_that_stops_arriving_is_answered_not_held_forever(
    facade_in_front: FacadeInFront,
) -> None:
    """Uploads answer 408 when their body stops for RPC_DEADLINE; an ordinary JSON body (up to
    10 MB held in memory) waits forever: no answer, the handler and its buffer held."""
    async with facade_in_front({}, RPC_DEADLINE="5") as client:
        answer, took = await raw_exchange(
            client,
            b"POST /api/v1/portfolios HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"name": ',
            within=12,
        )
    assert answer, f"no answer at all after {took:.1f} s (RPC_DEADLINE is 5 s)"
    status, _, _ = status_and_body(answer)
    assert status == 408


# --- a refused socket frame never ends the socket ---------------------------------------------


async def refused_then_ping(client: Client, path: str, token: str, frame: str) -> None:
    """`frame` sent on the socket at `path` is refused with an error message, and the socket
    answers the next message (it was closed with 1011)."""
    ws = await client.ws_connect(f"{path}?token={token}")
    assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    await ws.send_str(frame)
    reply = await ws.receive(timeout=WAIT)
    assert reply.type is WSMsgType.TEXT, (reply.type, reply.data, ws.close_code)
    refused: dict[str, Any] = json.loads(reply.data)
    assert (refused["type"], refused["message"]) == ("error", "messages must be valid Unicode text")
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=WAIT) == {"type": "pong"}
    await ws.close()


async def test_a_frame_with_a_lone_surrogate_is_refused_not_the_socket_closed(
    facade_in_front: FacadeInFront, users_service: RuntimeConfig
) -> None:
    """Valid JSON text (JSON.stringify writes a lone surrogate this way), which no UTF-8 text
    or protobuf string can hold: a terminal's keystrokes and a chat join naming one closed the
    socket with 1011."""
    async with facade_in_front({"users": users_service.addresses["users"][0]}) as client:
        user = await register(client)
        await refused_then_ping(
            client, "/ws/terminal", user.token, '{"type": "data", "data": "\\ud800"}'
        )
        await refused_then_ping(
            client, "/ws/chat", user.token, '{"type": "join_session", "sessionId": "\\udfff"}'
        )


# --- rate limits -----------------------------------------------------------------------------


async def test_one_ipv6_64_network_shares_one_auth_budget(facade_in_front: FacadeInFront) -> None:
    """Behind the trusted proxy, a client holding one IPv6 /64 (what any host or home line is
    given) names a new address per request: each gets a fresh RATE_LIMIT_AUTH budget."""
    async with facade_in_front({}, RATE_LIMIT_AUTH="2/minute", TRUST_PROXY="true") as client:
        statuses = []
        for host in range(1, 7):
            response = await client.post(
                "/api/v1/auth/login",
                json={"email": "a@example.com", "password": "x"},
                headers={"X-Forwarded-For": f"2001:db8:0:1::{host:x}"},
            )
            statuses.append(response.status)
    # Two tries for the whole /64 (503: no users service here, so not limited), then 429.
    assert statuses == [503, 503, 429, 429, 429, 429], statuses


async def test_an_enum_query_value_with_two_minus_signs_is_a_422_not_a_500(
    facade: Client,
) -> None:
    response = await facade.get("/api/v1/trades", params={"side": "--1"})
    body = await response.text()
    assert response.status == 422, (response.status, body[:300])


async def test_an_enum_body_value_with_two_minus_signs_is_a_422_not_a_500(
    facade: Client,
) -> None:
    response = await facade.post(
        "/api/v1/trades",
        json={"portfolioId": "p", "symbol": "AAPL", "side": "--1", "quantity": "1"},
    )
    body = await response.text()
    assert response.status == 422, (response.status, body[:300])


async def test_a_json_body_that_keeps_arriving_is_not_a_408(
    facade_in_front: FacadeInFront,
) -> None:
    body = b'{"name": "' + b"x" * 80 + b'"}'
    async with facade_in_front({}, RPC_DEADLINE="5") as client:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        started = time.monotonic()
        writer.write(
            b"POST /api/v1/portfolios HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sent_at = []
        for i in range(0, len(body), 10):  # a piece each second: never idle for more than 1 s
            writer.write(body[i : i + 10])
            await writer.drain()
            sent_at.append(round(time.monotonic() - started, 1))
            await asyncio.sleep(1.0)
        answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
    status, _, text = status_and_body(answer)
    assert status != 408, (status, text[:200], "pieces sent at", sent_at)
