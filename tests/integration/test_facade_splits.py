"""Stock splits end to end through the real facade, users and portfolio services: the routes
the annotations give (camelCase fields in the envelope, 201 on a create), the refusals as the
envelope says them (422 SPLIT_CONFLICT naming the trade, 409 SPLIT_EXISTS, 422 naming a field,
404 for another user's portfolio), an Idempotency-Key retried, and a delete."""

from __future__ import annotations

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import Client, bearer, portfolio_with_trades, register

pytestmark = SQLITE_ONLY


async def test_splits_through_the_facade(client: Client) -> None:
    rows = (("buy", "100", "900", "0", "2024-03-01"), ("sell", "50", "900", "0", "2024-06-03"))
    token, portfolio_id = await portfolio_with_trades(client, "Splits", "NVDA", rows)
    who = bearer(token)
    route = f"/api/v1/portfolios/{portfolio_id}/splits"

    # 1-for-10 before the sell leaves 10 shares for a sell of 50: refused, nothing written.
    reverse = {"symbol": "NVDA", "date": "2024-05-01", "numerator": 1, "denominator": 10}
    refused = await client.post(route, json=reverse, headers=who)
    assert refused.status == 422, await refused.text()
    said = await refused.json()
    assert (said["success"], said["error"]) == (False, "SPLIT_CONFLICT")
    assert "the sell of 50 NVDA on 2024-06-03" in said["message"]

    keyed = {**who, "Idempotency-Key": "nvda-2024"}
    forward = {"symbol": "NVDA", "date": "2024-06-10", "numerator": 10, "denominator": 1}
    made = await client.post(route, json=forward, headers=keyed)
    assert made.status == 201, await made.text()
    split = (await made.json())["data"]
    assert {k: split[k] for k in ("portfolioId", "symbol", "date", "numerator", "denominator")} == {
        "portfolioId": portfolio_id,
        "symbol": "NVDA",
        "date": "2024-06-10",
        "numerator": 10,
        "denominator": 1,
    }
    assert (split["quantityBefore"], split["quantityAfter"], split["cashInLieu"]) == (
        "50",
        "500",
        "0.00",
    )
    again = await client.post(route, json=forward, headers=keyed)
    assert (await again.json())["data"]["id"] == split["id"]
    twice = await client.post(route, json={**forward, "numerator": 4}, headers=who)
    assert twice.status == 409, await twice.text()
    assert (await twice.json())["error"] == "SPLIT_EXISTS"
    bad = await client.post(route, json={**forward, "denominator": 0}, headers=who)
    assert bad.status == 422, await bad.text()
    assert [f["field"] for f in (await bad.json())["details"]["fields"]] == ["denominator"]

    listed = await client.get(route, headers=who)
    assert [s["id"] for s in (await listed.json())["data"]] == [split["id"]]
    positions = await client.get(f"/api/v1/positions?portfolioId={portfolio_id}", headers=who)
    (held,) = (await positions.json())["data"]
    assert (held["symbol"], held["quantity"], held["averageCost"]) == ("NVDA", "500", "90.00")

    stranger, _ = await register(client)
    hidden = await client.get(route, headers=bearer(stranger))
    assert hidden.status == 404, await hidden.text()
    gone = await client.delete(f"{route}/{split['id']}", headers=bearer(stranger))
    assert gone.status == 404, await gone.text()

    deleted = await client.delete(f"{route}/{split['id']}", headers=who)
    assert deleted.status == 200, await deleted.text()
    assert (await (await client.get(route, headers=who)).json())["data"] == []
    positions = await client.get(f"/api/v1/positions?portfolioId={portfolio_id}", headers=who)
    assert (await positions.json())["data"][0]["quantity"] == "50"
