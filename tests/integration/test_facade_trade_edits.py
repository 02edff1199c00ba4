"""Editing a trade end to end through the real facade, users and portfolio services: PATCH
/api/v1/trades/{id} with only the fields to change, answered in the envelope with the trade as
it is now; a change of side refused 422 saying to delete and record anew; a sell raised past
what is held refused 422 INSUFFICIENT_SHARES naming it; 404 TRADE_NOT_FOUND for another user's
trade; and the `trade_updated` message on the owner's /ws/portfolio sockets only."""

from __future__ import annotations

from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    anns_sell,
    bearer,
    until_pong,
)
from tests.integration.socket_client import receive

pytestmark = SQLITE_ONLY


async def test_editing_a_trade_through_the_facade(client: Client) -> None:
    ann, bob, portfolio_id, bought, sold, anns, bobs = await anns_sell(client, sold="4")

    edited = await client.patch(
        f"/api/v1/trades/{sold['id']}",
        json={"quantity": "6", "notes": "two more"},
        headers=bearer(ann),
    )
    assert edited.status == 200, await edited.text()
    answer = await edited.json()
    now = {**sold, "quantity": "6", "amount": "720.00", "notes": "two more"}
    assert (answer["success"], answer["data"]) == (
        True,
        {"trade": now, "adjustedDividends": [], "removedDividends": []},
    )
    assert answer["service"] == "portfolio"
    assert await receive(anns, "trade_updated") == {"type": "trade_updated", "trade": now}
    assert all(m["type"] != "trade_updated" for m in await until_pong(bobs))

    # The same body again: the same trade.
    again = await client.patch(
        f"/api/v1/trades/{sold['id']}",
        json={"quantity": "6", "notes": "two more"},
        headers=bearer(ann),
    )
    assert (await again.json())["data"]["trade"] == now

    kind = await client.patch(
        f"/api/v1/trades/{sold['id']}", json={"side": "buy"}, headers=bearer(ann)
    )
    assert kind.status == 422, await kind.text()
    said = await kind.json()
    assert (said["error"], said["message"]) == (
        "VALIDATION_ERROR",
        "a trade's side, symbol and portfolio stay as recorded: side cannot be changed: delete"
        " the trade and record it anew",
    )
    assert [f["field"] for f in said["details"]["fields"]] == ["side"]

    raised = await client.patch(
        f"/api/v1/trades/{sold['id']}", json={"quantity": "11"}, headers=bearer(ann)
    )
    assert raised.status == 422, await raised.text()
    said = await raised.json()
    assert said["error"] == "INSUFFICIENT_SHARES"
    assert said["message"] == (
        "editing the sell of 6 AAPL on 2024-06-03 into the sell of 11 AAPL on 2024-06-03 would"
        " make it impossible: cannot sell 11 AAPL: only 10 held (short by 1)"
    )
    assert said["details"]["tradeId"] == sold["id"]

    hidden = await client.patch(
        f"/api/v1/trades/{bought['id']}", json={"quantity": "1"}, headers=bearer(bob)
    )
    assert hidden.status == 404, await hidden.text()
    assert (await hidden.json())["error"] == "TRADE_NOT_FOUND"

    listed = await client.get(f"/api/v1/trades?portfolioId={portfolio_id}", headers=bearer(ann))
    trades: list[dict[str, Any]] = (await listed.json())["data"]
    assert trades == [now, bought]
    await anns.close()
    await bobs.close()
