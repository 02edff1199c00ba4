"""Orders end to end through the real facade, users and portfolio services: the REST routes
(refusals as 422/404 naming the field or reason, an Idempotency-Key, cancel), and a fill on the
moving simulated market arriving on /ws/portfolio as `order` and `trade` messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    authenticated,
    bearer,
    create_portfolio,
    register,
)
from tests.integration.socket_client import receive

pytestmark = SQLITE_ONLY


async def place(
    http: Client,
    token: str,
    portfolio_id: str,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> tuple[int, dict[str, Any]]:
    # Good until cancelled: a DAY order expires at midnight UTC, which a test may run across
    # (an order placed before it is expired by the leader's sweep or the crossing tick).
    body = {
        "portfolioId": portfolio_id,
        "symbol": "AAPL",
        "side": "buy",
        "type": "limit",
        "quantity": "2",
        "limitPrice": "1",
        "timeInForce": "gtc",
        **fields,
    }
    response = await http.post(
        "/api/v1/orders", json=body, headers={**bearer(token), **(headers or {})}
    )
    return response.status, await response.json()


async def test_order_routes_refuse_what_they_must(client: Client) -> None:
    ann, _ = await register(client)
    paper = await create_portfolio(client, ann, "Paper", kind="paper", initialCash="10000")
    tracking = await create_portfolio(client, ann, "Paper", kind="tracking")

    status, body = await place(client, ann, tracking)
    assert status == 422, body
    assert body["error"] == "ORDERS_NEED_PAPER_PORTFOLIO"
    assert "paper" in body["message"]

    status, body = await place(client, ann, paper, limitPrice="")
    assert status == 422, body
    assert body["error"] == "VALIDATION_ERROR"
    assert "limitPrice" in body["message"]
    status, body = await place(client, ann, paper, limitPrice="1.1234567")
    assert status == 422, body
    assert "limitPrice" in str(body)
    status, body = await place(client, ann, paper, symbol="ZZZZQ")
    assert status == 404, body

    key = {"Idempotency-Key": "order-once"}
    first_status, first = await place(client, ann, paper, headers=key)
    again_status, again = await place(client, ann, paper, headers=key)
    assert (first_status, again_status) == (201, 201)
    assert again["data"]["id"] == first["data"]["id"]
    order_id = first["data"]["id"]
    assert first["data"]["status"] == "open"
    assert first["data"]["timeInForce"] == "gtc"

    listed = await client.get(f"/api/v1/orders?portfolioId={paper}", headers=bearer(ann))
    assert [o["id"] for o in (await listed.json())["data"]] == [order_id]

    bob, _ = await register(client)
    assert (await client.get(f"/api/v1/orders/{order_id}", headers=bearer(bob))).status == 404
    response = await client.post(f"/api/v1/orders/{order_id}:cancel", json={}, headers=bearer(bob))
    assert response.status == 404

    response = await client.post(f"/api/v1/orders/{order_id}:cancel", json={}, headers=bearer(ann))
    assert response.status == 200, await response.text()
    assert (await response.json())["data"]["status"] == "cancelled"
    response = await client.post(f"/api/v1/orders/{order_id}:cancel", json={}, headers=bearer(ann))
    assert response.status == 422
    assert (await response.json())["error"] == "ORDER_NOT_OPEN"


async def test_a_fill_reaches_the_owners_socket_as_order_and_trade(client: Client) -> None:
    ann, _ = await register(client)
    paper = await create_portfolio(client, ann, "Paper", kind="paper", initialCash="100000")
    ws = await authenticated(client, ann)
    quote = await client.get("/api/v1/stocks/AAPL/price", headers=bearer(ann))
    price = Decimal((await quote.json())["data"]["price"])

    status, placed = await place(client, ann, paper, limitPrice=str(price * 2))
    assert status == 201, placed
    order_id = placed["data"]["id"]

    opened = await receive(ws, "order")
    assert opened["order"]["id"] == order_id
    assert opened["order"]["status"] == "open"
    trade = (await receive(ws, "trade"))["trade"]
    assert trade["orderId"] == order_id
    filled = await receive(ws, "order")
    assert filled["order"]["status"] == "filled"
    assert filled["order"]["tradeId"] == trade["id"]
    assert Decimal(filled["order"]["filledPrice"]) == Decimal(trade["price"])
    assert Decimal(trade["price"]) <= price * 2

    got = await client.get(f"/api/v1/orders/{order_id}", headers=bearer(ann))
    assert (await got.json())["data"] == filled["order"]
    await ws.close()
