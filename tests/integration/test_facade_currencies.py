"""Currencies and the parts of a return end to end through the real facade, users and portfolio
services: GET /api/v1/fx (422 naming the field for an unknown code), a portfolio in euros
(422 for an unknown currency), and GET /api/v1/performance with its breakdown and a benchmark
(404 for an unknown one)."""

from __future__ import annotations

from decimal import Decimal

from tests.integration.test_facade_portfolio_streams import (  # noqa: F401 (fixtures)
    Client,
    bearer,
    client,
    database_url,
    open_facade,
    portfolio,
    portfolio_port,
    register,
)

D = Decimal


async def test_fx_route_answers_a_rate_and_refuses_an_unknown_code(
    client: Client,  # noqa: F811
) -> None:
    token, _ = await register(client)
    response = await client.get("/api/v1/fx?from=eur&to=USD", headers=bearer(token))
    assert response.status == 200, await response.text()
    body = (await response.json())["data"]
    assert (body["from"], body["to"], body["source"]) == ("EUR", "USD", "mock")
    assert D(body["rate"]) > 0
    on_a_day = await client.get("/api/v1/fx?from=USD&to=JPY&date=2024-03-16", headers=bearer(token))
    assert (await on_a_day.json())["data"]["date"] == "2024-03-15"
    refused = await client.get("/api/v1/fx?from=XYZ&to=USD", headers=bearer(token))
    assert refused.status == 422, await refused.text()
    assert "from" in await refused.text()
    # The rules' own words, naming each field (not a regular expression).
    malformed = await client.get("/api/v1/fx?from=EU&date=4.3.2024", headers=bearer(token))
    assert malformed.status == 422, await malformed.text()
    said = await malformed.json()
    assert {(f["field"], f["description"]) for f in said["details"]["fields"]} == {
        ("from", "must be a three-letter code such as USD"),
        ("to", "must be a three-letter code such as EUR"),
        ("date", "must be a date such as 2026-12-04"),
    }


async def test_performance_in_a_currency_with_breakdown_and_benchmark(
    client: Client,  # noqa: F811
) -> None:
    token, _ = await register(client)
    refused = await client.post(
        "/api/v1/portfolios", json={"name": "X", "currency": "XYZ"}, headers=bearer(token)
    )
    assert refused.status == 422, await refused.text()
    created = await client.post(
        "/api/v1/portfolios", json={"name": "Euro", "currency": "EUR"}, headers=bearer(token)
    )
    portfolio_id = (await created.json())["data"]["id"]
    trade = await client.post(
        "/api/v1/trades",
        json={
            "portfolioId": portfolio_id,
            "side": "buy",
            "symbol": "AAPL",
            "quantity": "2",
            "price": "150",
            "executedAt": "2024-03-15T15:00:00Z",
        },
        headers=bearer(token),
    )
    assert trade.status == 201, await trade.text()
    assert (await trade.json())["data"]["currency"] == "USD"
    response = await client.get(
        f"/api/v1/performance?portfolioId={portfolio_id}&benchmark=SPY", headers=bearer(token)
    )
    assert response.status == 200, await response.text()
    body = (await response.json())["data"]
    assert body["currency"] == "EUR"
    parts = body["breakdown"]
    money = ["capitalGain", "dividendGain", "currencyGain", "fees"]
    assert sum(D(parts.get(k, "0")) for k in money) == D(parts["totalGain"])
    assert body["benchmark"]["symbol"] == "SPY"
    assert len(body["benchmark"]["series"]) == len(body["series"])
    unknown = await client.get(
        f"/api/v1/performance?portfolioId={portfolio_id}&benchmark=ZZZZQ", headers=bearer(token)
    )
    assert unknown.status == 404, await unknown.text()
