"""Deleting a trade end to end through the real facade, users and portfolio services: DELETE
/api/v1/trades/{id} in the envelope (the portfolio's id), the refusals as the envelope says them
(422 INSUFFICIENT_SHARES naming the sell, with its id; 404 TRADE_NOT_FOUND for another user's
trade and for one deleted already; 422 for a blank id), and the `trade_deleted` message on the
owner's /ws/portfolio sockets only."""

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


async def test_deleting_trades_through_the_facade(client: Client) -> None:
    ann, bob, portfolio_id, bought, sold, anns, bobs = await anns_sell(client, sold="10")

    refused = await client.delete(f"/api/v1/trades/{bought['id']}", headers=bearer(ann))
    assert refused.status == 422, await refused.text()
    said = await refused.json()
    assert (said["success"], said["error"]) == (False, "INSUFFICIENT_SHARES")
    assert said["message"] == (
        "deleting the buy of 10 AAPL on 2024-03-01 would leave the sell of 10 AAPL on 2024-06-03"
        " impossible: cannot sell 10 AAPL: only 0 held (short by 10)"
    )
    assert said["details"]["tradeId"] == sold["id"]

    hidden = await client.delete(f"/api/v1/trades/{sold['id']}", headers=bearer(bob))
    assert hidden.status == 404, await hidden.text()
    assert ((await hidden.json())["error"], (await hidden.json())["message"]) == (
        "TRADE_NOT_FOUND",
        f"trade {sold['id']!r} not found",
    )

    deleted = await client.delete(f"/api/v1/trades/{sold['id']}", headers=bearer(ann))
    assert deleted.status == 200, await deleted.text()
    answer = await deleted.json()
    assert (answer["success"], answer["data"]) == (
        True,
        {"portfolioId": portfolio_id, "adjustedDividends": [], "removedDividends": []},
    )
    assert answer["correlationId"] and answer["service"] == "portfolio"
    assert await receive(anns, "trade_deleted") == {"type": "trade_deleted", "trade": sold}
    assert all(m["type"] != "trade_deleted" for m in await until_pong(bobs))

    twice = await client.delete(f"/api/v1/trades/{sold['id']}", headers=bearer(ann))
    assert twice.status == 404, await twice.text()
    assert (await twice.json())["error"] == "TRADE_NOT_FOUND"
    blank = await client.delete("/api/v1/trades/%20", headers=bearer(ann))
    assert blank.status == 422, await blank.text()
    assert [f["field"] for f in (await blank.json())["details"]["fields"]] == ["id"]

    listed = await client.get(f"/api/v1/trades?portfolioId={portfolio_id}", headers=bearer(ann))
    trades: list[dict[str, Any]] = (await listed.json())["data"]
    assert [t["id"] for t in trades] == [bought["id"]]
    positions = await client.get(
        f"/api/v1/positions?portfolioId={portfolio_id}", headers=bearer(ann)
    )
    (held,) = (await positions.json())["data"]
    assert (held["symbol"], held["quantity"], held["realizedGain"]) == ("AAPL", "10", "0.00")
    await anns.close()
    await bobs.close()
