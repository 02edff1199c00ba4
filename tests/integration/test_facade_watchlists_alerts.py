"""Watchlists and alerts end to end through the real facade, users and portfolio services
(SQLite; the simulated market moves every 50 ms): the REST routes from the proto, a socket
following a watchlist by id (another user's id is an error), and an alert created just above
the current price arriving as an `alert` message on /ws/portfolio."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    authenticated,
    bearer,
    register,
    until_pong,
)
from tests.integration.socket_client import WAIT, receive

pytestmark = SQLITE_ONLY

ALERT_FIELDS = {
    "type",
    "id",
    "alertId",
    "symbol",
    "condition",
    "threshold",
    "price",
    "firedAt",
    "read",
    "message",
}


async def edited(
    client: Client, token: str, watchlist_id: str, name: str, symbols: list[str]
) -> Any:
    """The watchlist as its owner's PUT renamed it and set its symbols."""
    path = f"/api/v1/watchlists/{watchlist_id}"
    return (await call(client, "PUT", path, token, 200, name=name, symbols=symbols))["data"]


async def aapl_alert(client: Client, token: str, condition: str, price: str) -> Any:
    """A new alert of the user's on AAPL crossing `price`, as created."""
    body = {"symbol": "AAPL", "condition": condition, "price": price}
    return (await call(client, "POST", "/api/v1/alerts", token, 201, **body))["data"]


async def follow_list(ws: Any, watchlist_id: str, symbols: set[str]) -> None:
    """Subscribes `ws` to a watchlist and waits for a price of each of its `symbols`."""
    await ws.send_json({"type": "subscribe", "watchlistIds": [watchlist_id]})
    seen = {m["symbol"] for m in await until_pong(ws) if m["type"] == "price"}
    while seen != symbols:
        seen.add((await receive(ws, "price"))["symbol"])


async def prices_within(ws: Any, seconds: float) -> set[str]:
    """The symbols of the prices a socket gets over `seconds` (the market moves every 50 ms)."""
    await asyncio.sleep(seconds)
    return {m["symbol"] for m in await until_pong(ws) if m["type"] == "price"}


async def call(client: Client, method: str, path: str, token: str, status: int, **body: Any) -> Any:
    response = await client.request(method, path, json=body or None, headers=bearer(token))
    assert response.status == status, await response.text()
    return await response.json() if response.status != 204 else None


async def test_watchlist_routes_and_a_socket_following_a_watchlist(client: Client) -> None:
    token, _ = await register(client)
    other, _ = await register(client)
    created = (
        await call(
            client, "POST", "/api/v1/watchlists", token, 201, name="Tech", symbols=["msft", "KO"]
        )
    )["data"]
    assert (created["name"], created["symbols"]) == ("Tech", ["MSFT", "KO"])
    assert [q["symbol"] for q in created["quotes"]] == ["MSFT", "KO"]
    assert {"price", "change", "changePercent"} <= created["quotes"][0].keys()

    renamed = await edited(client, token, created["id"], "Mine", ["KO", "MSFT"])
    assert (renamed["name"], renamed["symbols"]) == ("Mine", ["KO", "MSFT"])
    listed = await call(client, "GET", "/api/v1/watchlists", token, 200)
    assert [w["id"] for w in listed["data"]] == [created["id"]]
    missing = await call(client, "GET", f"/api/v1/watchlists/{created['id']}", other, 404)
    assert missing["error"] == "WATCHLIST_NOT_FOUND"
    unknown = await call(
        client, "POST", "/api/v1/watchlists", token, 404, name="X", symbols=["ZZZZ"]
    )
    assert "ZZZZ" in unknown["message"]
    twice = await call(
        client, "POST", "/api/v1/watchlists", token, 422, name="X", symbols=["KO", "ko"]
    )
    assert twice["error"] == "VALIDATION_ERROR"
    assert twice["message"] == "symbols: lists KO twice"
    # The same string twice: the document's uniqueItems, refused before the service's own check.
    for verb, path in (
        ("POST", "/api/v1/watchlists"),
        ("PUT", f"/api/v1/watchlists/{created['id']}"),
    ):
        same = await call(client, verb, path, token, 422, name="X", symbols=["KO", "MSFT", "KO"])
        assert same["details"]["fields"] == [
            {"field": "symbols", "description": "must not list a symbol twice"}
        ]

    ws = await authenticated(client, token)
    await follow_list(ws, created["id"], {"KO", "MSFT"})
    # Another user's list is refused, and nothing more is followed.
    intruder = await authenticated(client, other)
    await intruder.send_json({"type": "subscribe", "watchlistIds": [created["id"]]})
    refused = await receive(intruder, "error")
    assert refused["code"] == "WATCHLIST_NOT_FOUND"
    assert [m for m in await until_pong(intruder) if m["type"] == "price"] == []
    # Unsubscribing the list stops its prices.
    await ws.send_json({"type": "unsubscribe", "watchlistIds": [created["id"]]})
    await until_pong(ws)
    assert [m for m in await until_pong(ws) if m["type"] == "price"] == []
    await ws.close()
    await intruder.close()
    await call(client, "DELETE", f"/api/v1/watchlists/{created['id']}", token, 200)


async def test_an_alert_just_above_the_price_arrives_on_the_socket(client: Client) -> None:
    token, _ = await register(client)
    ws = await authenticated(client, token)
    await ws.send_json({"type": "subscribe", "symbols": ["AAPL"]})
    price = Decimal((await receive(ws, "price"))["price"])
    threshold = str(price + Decimal("0.01"))
    alert = await aapl_alert(client, token, "ALERT_CONDITION_ABOVE", threshold)
    below = await aapl_alert(client, token, "ALERT_CONDITION_BELOW", str(price - Decimal("0.01")))
    message = await receive(ws, "alert", within=WAIT * 3)
    assert set(message) == ALERT_FIELDS
    assert message["alertId"] in (alert["id"], below["id"])
    assert message["symbol"] == "AAPL"
    assert message["read"] is False
    if message["alertId"] == alert["id"]:
        assert Decimal(message["price"]) >= Decimal(alert["price"])
        assert message["message"] == f"AAPL rose above {alert['price']} ({message['price']})"
    else:
        assert Decimal(message["price"]) <= Decimal(below["price"])

    fired = await call(client, "GET", "/api/v1/fired-alerts", token, 200)
    assert fired["data"]["unread"] >= 1
    assert message["id"] in [f["id"] for f in fired["data"]["fired"]]
    marked = await call(client, "POST", "/api/v1/fired-alerts:markRead", token, 200)
    # The other alert may fire meanwhile (the price walks both ways): it is marked too.
    assert marked["data"]["marked"] >= fired["data"]["unread"]
    after = await call(client, "GET", "/api/v1/fired-alerts", token, 200)
    seen = {f["id"] for f in fired["data"]["fired"]}
    assert [f["read"] for f in after["data"]["fired"] if f["id"] in seen] == [True] * len(seen)
    await ws.close()


async def test_a_socket_follows_its_watchlist_as_it_is_edited_and_deleted(client: Client) -> None:
    token, _ = await register(client)
    created = (
        await call(
            client, "POST", "/api/v1/watchlists", token, 201, name="Tech", symbols=["KO", "MSFT"]
        )
    )["data"]
    ws = await authenticated(client, token)
    await follow_list(ws, created["id"], {"KO", "MSFT"})

    # Edited through REST (not on the socket): AAPL joins, MSFT leaves.
    await edited(client, token, created["id"], "Tech", ["KO", "AAPL"])
    deadline = asyncio.get_running_loop().time() + WAIT * 3
    while (await receive(ws, "price"))["symbol"] != "AAPL":
        assert asyncio.get_running_loop().time() < deadline, "AAPL was not followed"
    await until_pong(ws)  # prices of MSFT already on their way before the change
    assert "MSFT" not in await prices_within(ws, 0.5)

    # Deleted: nothing is followed any more.
    await call(client, "DELETE", f"/api/v1/watchlists/{created['id']}", token, 200)
    for _ in range(30):
        if not await prices_within(ws, 0.3):
            break
    assert await prices_within(ws, 0.5) == set()
    await ws.close()


async def test_an_edit_is_counted_against_the_socket_cap_without_the_lists_old_symbols(
    client: Client,
) -> None:
    """A socket naming 160 symbols itself follows a list of 30; the list swapped for 16 others
    fits (176: the 30 it held no longer count), the list grown to every 46 does not (206 of 200
    at most): that edit is refused on the socket and the list is followed as it was."""
    token, _ = await register(client)
    market = [
        q["symbol"]
        for q in (await call(client, "GET", "/api/v1/stocks?limit=100", token, 200))["data"]
    ]
    assert len(market) == 46
    first, last = market[:30], market[30:]
    created = (
        await call(client, "POST", "/api/v1/watchlists", token, 201, name="A", symbols=first)
    )["data"]
    ws = await authenticated(client, token)
    await ws.send_json({"type": "subscribe", "symbols": [f"Z{n:03}" for n in range(160)]})
    await follow_list(ws, created["id"], set(first))

    path = f"/api/v1/watchlists/{created['id']}"
    await call(client, "PUT", path, token, 200, name="A", symbols=last)
    deadline = asyncio.get_running_loop().time() + WAIT * 3
    while (await receive(ws, "price"))["symbol"] not in last:
        assert asyncio.get_running_loop().time() < deadline, "the swapped list was not followed"
    await until_pong(ws)

    await call(client, "PUT", path, token, 200, name="A", symbols=market)
    refused = await receive(ws, "error")
    assert refused["code"] == "VALIDATION_ERROR"
    assert f"watchlist {created['id']} now holds more symbols" in refused["message"]
    await until_pong(ws)
    assert await prices_within(ws, 0.5) <= set(last)
    await ws.close()
