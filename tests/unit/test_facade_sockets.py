"""The WebSocket pieces that need no service: frames as a real client reads them, what a
subscription may name, the stream and socket settings, and how OpenAPI shows streams."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from facade.config import load_facade_config
from facade.openapi import build_openapi
from facade.outbox import SocketError, json_frame, text_frame
from facade.plans import Plans
from facade.portfolio_feed import PortfolioFeed
from facade.routes import build_routes
from facade.ws_portfolio import MAX_SYMBOLS, read_subscription
from services.runtime.config import ConfigError
from tests.conftest import token_environment

BASE = {"STOCKFOLIO_ENV": "test", **token_environment("facade")}
# Each length form of RFC 6455: 7-bit, 16-bit and 64-bit lengths, at their edges.
SIZES = (0, 1, 125, 126, 65535, 65536, 200_000)


async def test_frames_built_once_read_back_as_sent_by_a_real_client() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        assert request.transport is not None
        for size in SIZES:
            request.transport.write(text_frame(b"x" * size))
        request.transport.write(json_frame({"type": "pong", "note": "caf\u00e9"}))
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/ws", max_msg_size=0)
        for size in SIZES:
            message = await ws.receive(timeout=5)
            assert message.type is WSMsgType.TEXT
            assert message.data == "x" * size
        assert json.loads((await ws.receive(timeout=5)).data) == {"type": "pong", "note": "café"}
        await ws.close()


def targets(message: dict[str, Any]) -> tuple[set[str], set[str]]:
    read = read_subscription(PortfolioFeed(Plans()).subscriptions, message["type"], message)
    return read.symbols, read.portfolios


def test_subscription_targets_are_upper_cased_and_deduplicated() -> None:
    symbols, portfolios = targets(
        {
            "type": "subscribe",
            "symbols": ["aapl", "AAPL", " msft ", "brk.b", "^GSPC"],
            "portfolioIds": ["1f0c6d1e-58a9-4c43-9b1e-2f1c9d0c2a11"],
        }
    )
    assert symbols == {"AAPL", "MSFT", "BRK.B", "^GSPC"}
    assert portfolios == {"1f0c6d1e-58a9-4c43-9b1e-2f1c9d0c2a11"}
    assert targets({"type": "unsubscribe", "portfolioIds": []}) == (set(), set())


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({"type": "subscribe"}, "subscribe needs symbols, watchlistIds and/or portfolioIds"),
        ({"type": "subscribe", "watchlistIds": ["a b"]}, "watchlistIds[0]: is not a watchlist id"),
        ({"type": "subscribe", "symbols": "AAPL"}, "symbols must be a list"),
        ({"type": "subscribe", "symbols": ["AAPL", 7]}, "symbols[1] must be a string"),
        ({"type": "subscribe", "symbols": ["AAPL;DROP"]}, "symbols[0]: is not a ticker symbol"),
        ({"type": "subscribe", "symbols": ["A", ""]}, "symbols[1]: is not a ticker symbol"),
        ({"type": "subscribe", "portfolioIds": ["a/b"]}, "portfolioIds[0]: is not a portfolio id"),
        ({"type": "subscribe", "portfolioIds": ["x" * 65]}, "is not a portfolio id"),
        ({"type": "subscribe", "symbols": [], "extra": 1}, "extra is not a field of Subscription"),
        (
            {"type": "subscribe", "symbols": ["A"] * (MAX_SYMBOLS + 1)},
            f"symbols: must contain no more than {MAX_SYMBOLS} item(s)",
        ),
    ],
)
def test_subscription_targets_are_checked(message: dict[str, Any], says: str) -> None:
    with pytest.raises(SocketError) as refused:
        targets(message)
    assert refused.value.code == "VALIDATION_ERROR"
    assert says in refused.value.message


def test_stream_and_socket_settings_have_defaults_and_are_read() -> None:
    defaults = load_facade_config(BASE)
    assert (defaults.stream_heartbeat, defaults.ws_auth_timeout) == (15.0, 10.0)
    assert (defaults.ws_heartbeat, defaults.ws_send_queue_bytes) == (30.0, 65536)
    chosen = load_facade_config(
        {
            **BASE,
            "STREAM_HEARTBEAT": "5",
            "WS_AUTH_TIMEOUT": "2.5",
            "WS_HEARTBEAT": "10",
            "WS_SEND_QUEUE_BYTES": "4096",
        }
    )
    assert (chosen.stream_heartbeat, chosen.ws_auth_timeout) == (5.0, 2.5)
    assert (chosen.ws_heartbeat, chosen.ws_send_queue_bytes) == (10.0, 4096)


@pytest.mark.parametrize(
    ("name", "value"),
    [("WS_SEND_QUEUE_BYTES", "10"), ("WS_AUTH_TIMEOUT", "soon"), ("STREAM_HEARTBEAT", "0")],
)
def test_bad_stream_and_socket_settings_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_facade_config({**BASE, name: value})


def test_openapi_shows_the_export_as_a_streamed_download() -> None:
    spec = build_openapi(build_routes())
    export = spec["paths"]["/api/v1/export"]["get"]
    ok = export["responses"]["200"]
    assert list(ok["content"]) == ["*/*"]
    assert ok["content"]["*/*"]["schema"] == {"type": "string", "format": "binary"}
    assert "export." in ok["headers"]["Content-Disposition"]["description"]
    assert export["responses"]["default"] == {"$ref": "#/components/responses/Error"}
    assert spec["components"]["schemas"]["StreamError"]["required"] == ["error", "message"]
