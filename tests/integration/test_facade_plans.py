"""Savings plans end to end through the real facade, users and portfolio services: the REST
routes (a tracking portfolio's 422, another user's 404, a field named in a 422, an
Idempotency-Key, pause by PATCH, delete), and a due plan bought by the server's own job arriving
on /ws/portfolio as a `trade` and listed as the plan's run."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    authenticated,
    bearer,
    create_portfolio,
    register,
)
from tests.integration.socket_client import receive
from tests.utc_days import one_utc_day

pytestmark = SQLITE_ONLY


@pytest.fixture
def portfolio_environment() -> dict[str, str]:
    """The portfolio service's plan job checks every 0.1 s."""
    return {"PORTFOLIO_PLAN_INTERVAL": "0.1"}


@one_utc_day  # the plan starts today: its first run is due at once
async def test_plan_routes_and_a_run_reaching_the_owners_socket(client: Client) -> None:
    ann, _ = await register(client)
    paper = await create_portfolio(client, ann, "Paper", kind="paper", initialCash="10000")
    tracking = await create_portfolio(client, ann, "Paper", kind="tracking")
    today = datetime.now(UTC).date().isoformat()
    body = {"symbol": "AAPL", "amount": "250", "every": "month", "startDate": today}

    refused = await client.post(
        f"/api/v1/portfolios/{tracking}/plans", json=body, headers=bearer(ann)
    )
    assert refused.status == 422
    answer = await refused.json()
    assert answer["error"] == "PLANS_NEED_PAPER_PORTFOLIO"
    assert "paper" in answer["message"]
    bad = await client.post(
        f"/api/v1/portfolios/{paper}/plans",
        json={**body, "startDate": "2026-02-30"},
        headers=bearer(ann),
    )
    assert bad.status == 422
    assert "startDate" in (await bad.json())["message"]

    ws = await authenticated(client, ann)
    # Paused first: the job skips it; resumed, its next date is next month's.
    keyed = {**bearer(ann), "Idempotency-Key": "plan-once"}
    url = f"/api/v1/portfolios/{paper}/plans"
    paused = {**body, "paused": True}
    first = await client.post(url, json=paused, headers=keyed)
    again = await client.post(url, json=paused, headers=keyed)
    assert (first.status, again.status) == (201, 201)
    plan = (await first.json())["data"]
    assert (await again.json())["data"]["id"] == plan["id"]
    assert (plan["every"], plan["amount"], plan["currency"], plan["fractional"]) == (
        "month",
        "250.00",
        "USD",
        True,
    )

    bob, _ = await register(client)
    for method, path in (
        ("GET", f"/api/v1/plans/{plan['id']}"),
        ("PATCH", f"/api/v1/plans/{plan['id']}"),
        ("DELETE", f"/api/v1/plans/{plan['id']}"),
        ("GET", f"/api/v1/plans/{plan['id']}/runs"),
        ("GET", url),
    ):
        response = await client.request(method, path, json={}, headers=bearer(bob))
        assert response.status == 404, (method, path)

    # A second plan, active: bought by the server's job within its first checks.
    active = await client.post(url, json={**body, "amount": "300"}, headers=bearer(ann))
    assert active.status == 201
    active_id = (await active.json())["data"]["id"]
    trade = (await receive(ws, "trade"))["trade"]
    assert trade["notes"] == f"plan {active_id}"
    assert (trade["symbol"], trade["side"]) == ("AAPL", "buy")
    assert Decimal(trade["quantity"]) * Decimal(trade["price"]) <= Decimal(300)

    listed = await client.get(f"{url}?limit=1&page=2", headers=bearer(ann))
    page = await listed.json()
    assert page["pagination"] == {"page": 2, "limit": 1, "total": 2, "totalPages": 2}
    assert [p["id"] for p in page["data"]] == [active_id]
    assert page["data"][0]["lastRun"]["tradeId"] == trade["id"]
    runs = await (await client.get(f"/api/v1/plans/{active_id}/runs", headers=bearer(ann))).json()
    assert [(r["date"], r["status"], r["tradeId"]) for r in runs["data"]] == [
        (today, "done", trade["id"])
    ]
    skipped = await (
        await client.get(f"/api/v1/plans/{plan['id']}/runs", headers=bearer(ann))
    ).json()
    assert [(r["status"], r["reason"]) for r in skipped["data"]] == [("skipped", "PAUSED")]

    resumed = await client.patch(
        f"/api/v1/plans/{plan['id']}", json={"paused": False}, headers=bearer(ann)
    )
    assert resumed.status == 200
    shown = (await resumed.json())["data"]
    assert (shown["paused"], shown["amount"]) == (False, "250.00")
    assert shown["nextRunDate"] > today

    gone = await client.delete(f"/api/v1/plans/{plan['id']}", headers=bearer(ann))
    assert gone.status in (200, 204)
    assert (await client.get(f"/api/v1/plans/{plan['id']}", headers=bearer(ann))).status == 404
    await ws.close()
