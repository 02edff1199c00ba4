"""Review attacks through the real facade: garbage query values on the realized-gains and
rebalance routes and a garbage targets body are a 400 naming the field (or an answer), never a
500."""

from __future__ import annotations

from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    bearer,
    register,
)

pytestmark = SQLITE_ONLY


async def test_garbage_queries_and_bodies_are_never_a_500(client: Client) -> None:
    token, _ = await register(client)
    who = bearer(token)
    created = await client.post(
        "/api/v1/portfolios", json={"name": "G", "initialCash": "1000"}, headers=who
    )
    portfolio_id = (await created.json())["data"]["id"]
    gains = f"/api/v1/portfolios/{portfolio_id}/realized-gains"
    answers = {}
    for query in (
        "page=99999999999999",
        "page=2147483647&limit=100",
        "limit=0",
        "limit=abc",
        "page=-3",
        "from=0000-01-01",
        "to=9999-12-31",
        "from=9999-12-31&to=9999-12-31",
        "from=2024-13-01",
        "costMethod=lifo",
        "costMethod=average",
        "from=%00",
        "to=" + "9" * 300,
    ):
        answer = await client.get(f"{gains}?{query}", headers=who)
        answers[query] = (answer.status, (await answer.json()).get("error", {}))
    assert {q: a[0] for q, a in answers.items() if a[0] >= 500} == {}
    rebalance = f"/api/v1/portfolios/{portfolio_id}/rebalance"
    for query in (
        "cash=1e20",
        "cash=-1",
        "cash=NaN",
        "fractional=maybe",
        "cash=" + "9" * 100,
        "cash=999999999999.99999999&fractional=true",
    ):
        answer = await client.get(f"{rebalance}?{query}", headers=who)
        answers[query] = (answer.status, await answer.text())
    assert {q: a for q, a in answers.items() if a[0] >= 500} == {}
    targets = f"/api/v1/portfolios/{portfolio_id}/targets"
    bodies: tuple[Any, ...] = (
        {"targets": [{"symbol": "AAPL", "weight": 50}]},
        {"targets": [{"symbol": "AAPL", "weight": None}]},
        {"targets": "AAPL"},
        {"targets": [{"symbol": ["A"], "weight": "1"}]},
        {"targets": [{"symbol": "AAPL", "weight": "1"}] * 1000},
        [],
        {"targets": [{"symbol": "AAPL", "weight": "1e400"}]},
    )
    for body in bodies:
        answer = await client.put(targets, json=body, headers=who)
        answers[repr(body)[:60]] = (answer.status, await answer.text())
    assert {q: a for q, a in answers.items() if a[0] >= 500} == {}


async def test_the_path_names_the_portfolio_whatever_the_body_or_query_says(
    client: Client,
) -> None:
    token, _ = await register(client)
    who = bearer(token)
    ids = []
    for name in ("A", "B"):
        created = await client.post(
            "/api/v1/portfolios", json={"name": name, "initialCash": "1000"}, headers=who
        )
        ids.append((await created.json())["data"]["id"])
    a, b = ids
    put = await client.put(
        f"/api/v1/portfolios/{a}/targets",
        json={"portfolioId": b, "targets": [{"symbol": "AAPL", "weight": "10"}]},
        headers=who,
    )
    assert put.status == 200, await put.text()
    assert (await put.json())["data"]["portfolioId"] == a
    got_a = await (await client.get(f"/api/v1/portfolios/{a}/targets", headers=who)).json()
    got_b = await (await client.get(f"/api/v1/portfolios/{b}/targets", headers=who)).json()
    assert got_a["data"]["targets"] == [{"symbol": "AAPL", "weight": "10"}]
    assert got_b["data"]["targets"] == []
    smuggled = await client.get(f"/api/v1/portfolios/{a}/rebalance?portfolioId={b}", headers=who)
    assert smuggled.status == 422
