"""The facade's streams over the real portfolio and users services: /ws/portfolio (auth, pings,
subscriptions, prices, trades and values to their owner only, slow and dead clients, Origin)
and the streamed export download.

The services run on SQLite only here: what is tested is the facade's fan-out, which does not
depend on the storage engine (the services' own tests cover both engines). The simulated market
moves every 50 ms and the calculator revalues every 0.3 s, so live messages come quickly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from facade.app import create_app
from facade.config import load_facade_config
from facade.keys import SOCKETS, UPSTREAMS
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users
from tests.conftest import SQLITE_ONLY, free_port
from tests.integration.facade_harness import (
    Client,
    OpenFacade,
    authenticated,
    bearer,
    buy,
    closed_with,
    connect,
    create_portfolio,
    portfolio_on,
    register,
    until_pong,
)
from tests.integration.socket_client import WAIT, Socket, receive
from tests.waiting import until

FRONTEND = "http://localhost:4100"
PRICE_FIELDS = {"type", "symbol", "price", "change", "changePercent", "time"}
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
pytestmark = SQLITE_ONLY


# --- authentication ------------------------------------------------------------------------


async def test_a_socket_authenticates_with_the_token_query_parameter(client: Client) -> None:
    token, _ = await register(client)
    ws = await authenticated(client, token)
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=WAIT) == {"type": "pong"}
    await ws.close()


async def test_a_socket_authenticates_with_a_first_auth_message(client: Client) -> None:
    token, _ = await register(client)
    ws = await connect(client)
    await ws.send_json({"type": "auth", "token": token})
    assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    assert await until_pong(ws) == []
    await ws.close()


async def test_anything_before_auth_is_refused_as_unauthenticated(client: Client) -> None:
    token, _ = await register(client)
    ws = await connect(client)
    for early in ({"type": "ping"}, {"type": "subscribe", "symbols": ["AAPL"]}):
        await ws.send_json(early)
        refused = await ws.receive_json(timeout=WAIT)
        assert refused["type"] == "error"
        assert refused["code"] == "UNAUTHENTICATED"
        assert "auth" in refused["message"]
    await ws.send_json({"type": "auth", "token": token})
    assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    await ws.close()


@pytest.mark.parametrize("how", ["query", "message"])
async def test_a_bad_token_is_refused_and_the_socket_closed_with_4401(
    client: Client, how: str
) -> None:
    if how == "query":
        ws = await connect(client, "not.a.jwt")
    else:
        ws = await connect(client)
        await ws.send_json({"type": "auth", "token": "not.a.jwt"})
    refused = await ws.receive_json(timeout=WAIT)
    assert refused == {"type": "error", "code": "TOKEN_INVALID", "message": "invalid access token"}
    assert await closed_with(ws) == 4401


async def test_a_logged_out_session_cannot_open_a_socket(client: Client) -> None:
    token, _ = await register(client)
    response = await client.post("/api/v1/auth/logout", json={}, headers=bearer(token))
    assert response.status == 200, await response.text()
    ws = await connect(client, token)
    refused = await ws.receive_json(timeout=WAIT)
    assert refused["type"] == "error"
    assert refused["code"] == "SESSION_REVOKED"
    assert await closed_with(ws) == 4401


async def test_a_socket_that_never_authenticates_is_closed_with_4401(
    open_facade: OpenFacade,
) -> None:
    async with open_facade(WS_AUTH_TIMEOUT="0.4") as client:
        started = time.monotonic()
        ws = await connect(client)
        refused = await ws.receive_json(timeout=WAIT)
        assert refused["code"] == "UNAUTHENTICATED"
        assert "0.4 s" in refused["message"]
        assert await closed_with(ws) == 4401
        assert 0.4 <= time.monotonic() - started < 5


async def test_a_fresh_token_for_the_same_user_renews_the_socket_and_anothers_is_refused(
    client: Client,
) -> None:
    token, _ = await register(client)
    other, _ = await register(client)
    ws = await authenticated(client, token)
    await ws.send_json({"type": "auth", "token": other})
    refused = await ws.receive_json(timeout=WAIT)
    assert refused["code"] == "PERMISSION_DENIED"
    await ws.send_json({"type": "auth", "token": token})
    assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    assert await until_pong(ws) == []
    await ws.close()


async def test_a_socket_is_closed_with_4401_when_its_token_expires(
    make_config: Callable[..., RuntimeConfig], users_database: str, portfolio: str
) -> None:
    settings = {"USERS_DATABASE_URL": users_database, "BCRYPT_COST": "4"}
    users_config = make_config("users", ACCESS_TOKEN_TTL="5", **settings)
    async with running(users_config, build_users, port=0, grace=0) as users:
        env = {
            "USERS_ADDRS": f"127.0.0.1:{users.port}",
            "PORTFOLIO_ADDRS": portfolio,
            "RATE_LIMIT_AUTH": "0",
        }
        config = load_facade_config(env, runtime=make_config("facade", **env))
        async with TestClient(TestServer(create_app(config))) as client:
            token, _ = await register(client)
            started = time.monotonic()
            ws = await authenticated(client, token)
            expired = await receive(ws, "error", within=WAIT)
            assert expired["code"] == "TOKEN_EXPIRED"
            assert await closed_with(ws) == 4401
            assert time.monotonic() - started < 6


# --- subscriptions and prices --------------------------------------------------------------


async def test_a_symbol_subscription_gets_price_ticks_for_that_symbol_only(
    client: Client,
) -> None:
    token, _ = await register(client)
    ws = await authenticated(client, token)
    await ws.send_json({"type": "subscribe", "symbols": ["aapl"]})
    prices = [await receive(ws, "price") for _ in range(5)]
    assert {p["symbol"] for p in prices} == {"AAPL"}
    for price in prices:
        assert set(price) == PRICE_FIELDS
        assert DECIMAL.match(price["price"])
        assert DECIMAL.match(price["change"])
        assert price["time"].endswith("Z")
    assert len({p["time"] for p in prices}) >= 4  # ticks, not one price repeated
    await ws.close()


async def test_unsubscribe_stops_delivery(client: Client) -> None:
    token, _ = await register(client)
    ws = await authenticated(client, token)
    await ws.send_json({"type": "subscribe", "symbols": ["MSFT", "AAPL"]})
    await receive(ws, "price")
    await ws.send_json({"type": "unsubscribe", "symbols": ["MSFT"]})
    await until_pong(ws)  # everything after the pong was sent after the unsubscribe
    later = [await receive(ws, "price") for _ in range(10)]
    assert {p["symbol"] for p in later} == {"AAPL"}
    await ws.send_json({"type": "unsubscribe", "symbols": ["AAPL"]})
    await until_pong(ws)
    # Ten ticks' time, counted on a socket that still listens.
    watcher = await authenticated(client, token)
    await watcher.send_json({"type": "subscribe", "symbols": ["AAPL"]})
    for _ in range(10):
        await receive(watcher, "price")
    await watcher.close()
    assert await until_pong(ws) == []
    await ws.close()


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        ({"type": "subscribe", "symbols": "AAPL"}, "VALIDATION_ERROR", "must be a list"),
        ({"type": "subscribe", "symbols": ["AA PL"]}, "VALIDATION_ERROR", "ticker symbol"),
        (
            {"type": "subscribe", "symbols": [f"S{n}" for n in range(201)]},
            "VALIDATION_ERROR",
            "no more than 200",
        ),
        ({"type": "subscribe", "portfolioIds": ["../x"]}, "VALIDATION_ERROR", "portfolio id"),
        ({"type": "subscribe", "symbol": ["AAPL"]}, "VALIDATION_ERROR", "symbol is not a field"),
        ({"type": "subscribe"}, "VALIDATION_ERROR", "symbols, watchlistIds and/or portfolioIds"),
        ({"type": "order", "symbols": ["AAPL"]}, "UNKNOWN_TYPE", "subscribe"),
        ({"symbols": ["AAPL"]}, "BAD_MESSAGE", "type"),
        ([1, 2], "BAD_MESSAGE", "JSON objects"),
    ],
)
async def test_bad_messages_are_refused_naming_the_problem_and_change_nothing(
    client: Client, message: Any, code: str, says: str
) -> None:
    token, _ = await register(client)
    ws = await authenticated(client, token)
    await ws.send_json(message)
    refused = await ws.receive_json(timeout=WAIT)
    assert refused["type"] == "error"
    assert refused["code"] == code
    assert says in refused["message"]
    assert await until_pong(ws) == []  # no subscription took effect; the socket stays open
    await ws.send_str("not json")
    assert (await ws.receive_json(timeout=WAIT))["code"] == "BAD_MESSAGE"
    await ws.close()


# --- trades and values: to their owner only --------------------------------------------------


async def test_a_trade_reaches_its_owners_sockets_and_no_one_elses(client: Client) -> None:
    ann, _ = await register(client)
    bob, _ = await register(client)
    portfolio_id = await create_portfolio(client, ann)
    ann_tabs = [await authenticated(client, ann) for _ in range(2)]
    bobs = await authenticated(client, bob)
    # Following Ann's portfolio id gets Bob nothing: events are routed by their owner.
    await bobs.send_json({"type": "subscribe", "portfolioIds": [portfolio_id]})
    await until_pong(bobs)
    trade = await buy(client, ann, portfolio_id, price="100")
    for tab in ann_tabs:
        assert await receive(tab, "trade") == {"type": "trade", "trade": trade}
    assert trade["side"] == "buy"
    assert trade["portfolioId"] == portfolio_id
    assert all(m["type"] != "trade" for m in await until_pong(bobs))
    for ws in (*ann_tabs, bobs):
        await ws.close()


async def test_portfolio_values_reach_only_the_owners_sockets_following_that_portfolio(
    client: Client,
) -> None:
    ann, _ = await register(client)
    bob, _ = await register(client)
    portfolio_id = await create_portfolio(client, ann)
    await buy(client, ann, portfolio_id, price="100")
    following = await authenticated(client, ann)
    other_tab = await authenticated(client, ann)
    bobs = await authenticated(client, bob)
    for ws in (following, bobs):
        await ws.send_json({"type": "subscribe", "portfolioIds": [portfolio_id]})
    values = [await receive(following, "portfolio_value") for _ in range(2)]
    for value in values:
        assert set(value) == {"type", "portfolioId", "totalValue", "totalGainLoss", "time"}
        assert value["portfolioId"] == portfolio_id
        assert DECIMAL.match(value["totalValue"])
        assert DECIMAL.match(value["totalGainLoss"])
    for ws in (other_tab, bobs):
        assert all(m["type"] != "portfolio_value" for m in await until_pong(ws))
    for ws in (following, other_tab, bobs):
        await ws.close()


# --- slow and dead clients ------------------------------------------------------------------


class StalledSocket:
    """A WebSocket client written by hand, with tiny buffers, that can stop reading (so it
    neither takes its messages nor answers pings)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str) -> StalledSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_json(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes((0x81, 0x80 | len(payload))) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def close_code(self) -> int | None:
        """Read everything the server sent; its close code, or None when it cut the line."""
        try:
            while True:
                opcode, payload = await asyncio.wait_for(self.frame(), WAIT)
                if opcode == 0x8:
                    code: int = struct.unpack("!H", payload[:2])[0]
                    return code
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self.writer.close()


async def dropped_slow(client: Client) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(r'^stockfolio_ws_dropped_total\{reason="slow"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_slow_consumer_is_dropped_while_a_fast_one_keeps_receiving(
    open_facade: OpenFacade,
) -> None:
    async with open_facade(WS_SEND_QUEUE_BYTES="1024") as client:
        token, _ = await register(client)
        dropped_before = await dropped_slow(client)
        port = client.server.port
        assert port is not None
        stalled = await StalledSocket.open(port, f"/ws/portfolio?token={token}")
        opcode, payload = await stalled.frame()
        assert (opcode, json.loads(payload)) == (0x1, {"type": "auth_ok"})
        fast = await authenticated(client, token)
        await fast.send_json({"type": "subscribe", "symbols": ["AAPL"]})
        every = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "MA"]
        for start in range(0, len(every), 5):
            stalled.send_json({"type": "subscribe", "symbols": every[start : start + 5]})
        # The stalled client reads nothing more; the fast one reads all along.
        deadline = time.monotonic() + 20
        received = 0
        while await dropped_slow(client) == dropped_before:
            assert time.monotonic() < deadline, "the stalled socket was never dropped"
            await receive(fast, "price")
            received += 1
        after = [await receive(fast, "price") for _ in range(10)]
        assert {p["symbol"] for p in after} == {"AAPL"}
        assert await stalled.close_code() in {4008, None}
        await until(lambda: client.app[SOCKETS].count == 1, "the dropped socket to go")
        assert received > 0
        stalled.close()
        await fast.close()


async def test_a_client_that_stops_answering_pings_is_disconnected(
    open_facade: OpenFacade,
) -> None:
    async with open_facade(WS_HEARTBEAT="0.3") as client:
        token, _ = await register(client)
        port = client.server.port
        assert port is not None
        silent = await StalledSocket.open(port, f"/ws/portfolio?token={token}")
        await until(lambda: client.app[SOCKETS].count == 1, "the socket to open")
        await until(lambda: client.app[SOCKETS].count == 0, "the silent socket to go", 5)
        silent.close()


async def test_a_client_that_answers_pings_stays_open_through_many_beats(
    open_facade: OpenFacade,
) -> None:
    async with open_facade(WS_HEARTBEAT="0.4") as client:
        token, _ = await register(client)
        ws: Socket = await client.ws_connect(f"/ws/portfolio?token={token}", autoping=False)
        # A beat may come before auth_ok on a loaded machine: answered as a browser does.
        pings = 0
        while (first := await ws.receive(timeout=WAIT)).type is WSMsgType.PING:
            pings += 1
            await ws.pong(first.data)
        assert first.json() == {"type": "auth_ok"}
        # Six beats, answering every ping as a browser does.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.4):
                while True:
                    message = await ws.receive()
                    assert message.type is WSMsgType.PING, message
                    pings += 1
                    await ws.pong(message.data)
        assert pings >= 3
        assert client.app[SOCKETS].count == 1
        assert await until_pong(ws) == []
        await ws.close()


async def test_a_ping_from_the_client_gets_a_pong_with_its_payload(client: Client) -> None:
    token, _ = await register(client)
    ws: Socket = await client.ws_connect(f"/ws/portfolio?token={token}", autoping=False)
    assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    await ws.ping(b"are you there")
    answer = await ws.receive(timeout=WAIT)
    assert (answer.type, answer.data) == (WSMsgType.PONG, b"are you there")
    await ws.close()


# --- handshake --------------------------------------------------------------------------------


async def test_a_socket_from_a_disallowed_origin_is_refused_before_the_upgrade(
    client: Client,
) -> None:
    token, _ = await register(client)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(client, token, origin="https://evil.example")
    assert refused.value.status == 403
    allowed = await connect(client, token, origin=FRONTEND)
    assert await allowed.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    await allowed.close()


async def test_a_plain_request_to_the_socket_path_is_told_to_upgrade(client: Client) -> None:
    response = await client.get("/ws/portfolio")
    body = await response.json()
    assert response.status == 426
    assert response.headers["Upgrade"] == "websocket"
    assert body["error"] == "UPGRADE_REQUIRED"


async def test_open_sockets_are_told_the_server_is_going_away_at_shutdown(
    open_facade: OpenFacade,
) -> None:
    async with open_facade() as client:
        token, _ = await register(client)
        ws = await authenticated(client, token)
        shutting_down = asyncio.ensure_future(client.server.close())
        assert await closed_with(ws) == 1001
        await shutting_down


# --- upstream: a replica that goes away ------------------------------------------------------


async def test_prices_resume_when_the_portfolio_replica_comes_back(
    open_facade: OpenFacade,
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    replica_database: str,
) -> None:
    database = replica_database
    users = users_service.addresses["users"][0]
    port = free_port()
    async with contextlib.AsyncExitStack() as replica:
        await replica.enter_async_context(portfolio_on(make_config, users, database, port))
        async with open_facade(PORTFOLIO_ADDRS=f"127.0.0.1:{port}") as client:
            token, _ = await register(client)
            ws = await authenticated(client, token)
            await ws.send_json({"type": "subscribe", "symbols": ["AAPL"]})
            await receive(ws, "price")
            upstreams = client.app[UPSTREAMS]
            await replica.aclose()  # the replica goes away...
            await until(lambda: upstreams.live == 0, "the upstream streams to end")
            await until_pong(ws)
            async with portfolio_on(make_config, users, database, port):  # ...and comes back
                await until(lambda: upstreams.live == 2, "the streams to reopen", 15)
                await receive(ws, "price")
            await ws.close()


# --- the export download ----------------------------------------------------------------------


async def exported(
    client: Client, token: str, portfolio_id: str, format_: str
) -> aiohttp.ClientResponse:
    """The export of `portfolio_id`, which must come as a download named export.<format_>."""
    response = await client.get(
        "/api/v1/export",
        params={"portfolioId": portfolio_id, "format": format_},
        headers=bearer(token),
    )
    assert response.status == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="export.{format_}"'
    return response


async def test_the_export_streams_the_portfolios_trades_as_a_csv_download(
    client: Client,
) -> None:
    token, _ = await register(client)
    portfolio_id = await create_portfolio(client, token)
    first = await buy(client, token, portfolio_id, price="100", notes="=1+1")
    second = await buy(client, token, portfolio_id, symbol="MSFT", quantity="1.5", price="200")
    response = await exported(client, token, portfolio_id, "csv")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    text = (await response.read()).decode()
    trades_table = text.split("\r\n\r\n", 1)[0]
    rows = list(csv.DictReader(io.StringIO(trades_table)))
    assert [(r["id"], r["side"], r["symbol"], r["quantity"], r["price"]) for r in rows] == [
        (t["id"], "buy", t["symbol"], t["quantity"], t["price"]) for t in (first, second)
    ]
    assert (first["symbol"], second["quantity"]) == ("AAPL", "1.5")
    assert rows[0]["notes"] == "'=1+1"  # no formula reaches a spreadsheet


async def test_the_json_export_is_one_json_document(client: Client) -> None:
    token, _ = await register(client)
    portfolio_id = await create_portfolio(client, token)
    trade = await buy(client, token, portfolio_id, price="100")
    document = json.loads(await (await exported(client, token, portfolio_id, "json")).read())
    assert [t["id"] for t in document["trades"]] == [trade["id"]]
    assert document["portfolio"]["id"] == portfolio_id


async def test_exporting_an_unknown_portfolio_is_a_404_envelope_not_a_stream(
    client: Client,
) -> None:
    token, _ = await register(client)
    response = await client.get(
        "/api/v1/export", params={"portfolioId": "nope", "format": "csv"}, headers=bearer(token)
    )
    body = await response.json()
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/json"
    assert body["success"] is False
    assert body["error"] == "PORTFOLIO_NOT_FOUND"
    assert body["service"] == "portfolio"


async def test_another_users_portfolio_cannot_be_exported(client: Client) -> None:
    ann, _ = await register(client)
    bob, _ = await register(client)
    portfolio_id = await create_portfolio(client, ann)
    response = await client.get(
        "/api/v1/export", params={"portfolioId": portfolio_id}, headers=bearer(bob)
    )
    assert response.status == 404


async def test_a_logout_closes_the_sessions_open_sockets_within_the_recheck(
    open_facade: OpenFacade,
) -> None:
    async with open_facade(WS_SESSION_RECHECK="0.2") as client:
        token, _ = await register(client)
        other, _ = await register(client)
        first, second = await authenticated(client, token), await authenticated(client, token)
        bystander = await authenticated(client, other)
        response = await client.post("/api/v1/auth/logout", json={}, headers=bearer(token))
        assert response.status == 200, await response.text()
        for ws in (first, second):
            told = await ws.receive_json(timeout=WAIT)
            assert (told["type"], told["code"]) == ("error", "SESSION_REVOKED")
            assert await closed_with(ws) == 4401
        # Another user's socket stays open and answers.
        await bystander.send_json({"type": "ping"})
        assert await bystander.receive_json(timeout=WAIT) == {"type": "pong"}
