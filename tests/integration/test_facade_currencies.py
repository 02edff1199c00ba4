"""Currencies, the parts of a return and a stock's history end to end through the real facade,
users and portfolio services: GET /api/v1/fx (422 naming the field for an unknown code), a
portfolio in euros (422 for an unknown currency), GET /api/v1/performance with its breakdown and
a benchmark (404 for an unknown one), and GET /api/v1/stocks/{symbol}/history (a range's daily
closes with the change over it; 404, 422 naming the range, 401)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    bearer,
    register,
)

pytestmark = SQLITE_ONLY

D = Decimal


async def test_fx_route_answers_a_rate_and_refuses_an_unknown_code(
    client: Client,
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
    malformed = await client.get("/api/v1/fx?from=EU&to=E&date=4.3.2024", headers=bearer(token))
    assert malformed.status == 422, await malformed.text()
    said = await malformed.json()
    assert {(f["field"], f["description"]) for f in said["details"]["fields"]} == {
        ("from", "must be a three-letter code such as USD"),
        ("to", "must be a three-letter code such as EUR"),
        ("date", "must be a date such as 2026-12-04"),
    }
    # Both codes are required (the document says so); an absent one is named as missing.
    for query in ("from=AAA&date=", "to=EUR", "from=&to=EUR"):
        absent = await client.get(f"/api/v1/fx?{query}", headers=bearer(token))
        assert absent.status == 422, await absent.text()
        said = await absent.json()
        missing = "from" if query.startswith(("to", "from=&")) else "to"
        assert said["details"]["fields"] == [{"field": missing, "description": "is required"}]
        assert said["message"] == f"{missing}: is required"


async def test_performance_in_a_currency_with_breakdown_and_benchmark(
    client: Client,
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


async def test_history_route_answers_closes_and_refuses_bad_input(
    client: Client,
) -> None:
    token, _ = await register(client)
    response = await client.get("/api/v1/stocks/msft/history?range=3m", headers=bearer(token))
    assert response.status == 200, await response.text()
    body = (await response.json())["data"]
    assert body["stock"]["symbol"] == "MSFT"
    assert body["stock"]["currency"] == "USD"
    assert body["range"] == "3m"
    closes = body["closes"]
    days = [date.fromisoformat(point["date"]) for point in closes]
    assert days == sorted(set(days))
    start, end = date.fromisoformat(body["startDate"]), date.fromisoformat(body["endDate"])
    assert days[0] <= start < days[1]
    assert days[-1] <= end
    first, last = D(closes[0]["value"]), D(closes[-1]["value"])
    assert D(body["change"]) == last - first
    assert abs(D(body["changeRatio"]) - (last - first) / first) < D("0.000001")

    unknown = await client.get("/api/v1/stocks/ZZZZQ/history", headers=bearer(token))
    assert unknown.status == 404, await unknown.text()
    bad = await client.get("/api/v1/stocks/MSFT/history?range=2y", headers=bearer(token))
    assert bad.status == 422, await bad.text()
    fields = (await bad.json())["details"]["fields"]
    assert [f["field"] for f in fields] == ["range"]
    anonymous = await client.get("/api/v1/stocks/MSFT/history")
    assert anonymous.status == 401, await anonymous.text()
