"""The overview of all portfolios end to end through the real facade, users and portfolio
services: GET /api/v1/overview (the route GetOverview's annotation gives) in the envelope with
lowerCamelCase names and the kind's short value, its figures against the portfolios' own and
the rate GET /api/v1/fx gives, USD when no currency is asked for, and a 422 naming `currency`
for one the service does not keep."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    bearer,
    buy,
    register,
)
from tests.utc_days import one_utc_day

pytestmark = SQLITE_ONLY

D = Decimal


def cent(value: Decimal) -> Decimal:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)


@one_utc_day
async def test_the_overview_through_the_facade(client: Client) -> None:
    token, _ = await register(client)
    who = bearer(token)
    made = await client.post(
        "/api/v1/portfolios",
        json={"name": "Dollars", "kind": "paper", "initialCash": "10000"},
        headers=who,
    )
    dollars = (await made.json())["data"]["id"]
    await buy(client, token, dollars, quantity="3", price="190")
    made = await client.post(
        "/api/v1/portfolios", json={"name": "Euros", "currency": "EUR"}, headers=who
    )
    euros = (await made.json())["data"]["id"]
    deposit = {"portfolioId": euros, "side": "deposit", "quantity": "2500.505"}
    assert (await client.post("/api/v1/trades", json=deposit, headers=who)).status == 201

    response = await client.get("/api/v1/overview", headers=who)
    assert response.status == 200, await response.text()
    envelope = await response.json()
    assert envelope["success"] is True
    data = envelope["data"]
    assert set(data) == {
        "currency",
        "totals",
        "portfolios",
        "holdings",
        "allocation",
        "rates",
        "asOf",
    }
    assert data["currency"] == "USD"  # when none is asked for
    fx = await client.get("/api/v1/fx?from=EUR&to=USD", headers=who)
    rate = (await fx.json())["data"]
    assert data["rates"] == [rate]  # {from, to, rate, date, source}, as /api/v1/fx says it
    eur_usd = D(rate["rate"])

    # The market moves every 50 ms here: the dollar portfolio is checked against the price the
    # overview itself shows for AAPL (a dollar listing in a dollar overview: rate 1).
    (aapl,) = data["holdings"]
    price = D(aapl["localPrice"])
    assert aapl == {
        "symbol": "AAPL",
        "quantity": "3",
        "marketValue": str(cent(3 * price)),
        "costBasis": "570.00",
        "unrealizedGain": str(cent(3 * price) - D("570.00")),
        "weight": aapl["weight"],
        "portfolioCount": 1,
        "currency": "USD",
        "localPrice": aapl["localPrice"],
    }
    # 2,500.505 euros are shown as 2,500.50 (half-even), converted at the listed rate.
    in_dollars = cent(D("2500.50") * eur_usd)
    value = cent(D("9430") + 3 * price) + in_dollars
    assert data["totals"] == {
        "totalValue": str(value),
        "cash": str(D("9430.00") + in_dollars),
        "totalCost": str(D("10000.00") + in_dollars),
        "totalGainLoss": str(value - D("10000.00") - in_dollars),
        "totalGainLossPercent": str(
            cent((value - D("10000.00") - in_dollars) / (D("10000.00") + in_dollars) * 100)
        ),
        "costBasis": "570.00",
        "realizedGain": "0.00",
        "unrealizedGain": aapl["unrealizedGain"],
        "dividends": "0.00",
        "fees": "0.00",
    }
    first, second = data["portfolios"]
    assert first == {
        "id": dollars,
        "name": "Dollars",
        "kind": "paper",
        "currency": "USD",
        "localValue": str(cent(D("9430") + 3 * price)),
        "fxRate": "1",
        "value": str(cent(D("9430") + 3 * price)),
        "weight": first["weight"],
    }
    assert second == {
        "id": euros,
        "name": "Euros",
        "kind": "tracking",
        "currency": "EUR",
        "localValue": "2500.50",
        "fxRate": rate["rate"],
        "value": str(in_dollars),
        "weight": second["weight"],
    }
    assert D(first["weight"]) + D(second["weight"]) == 1
    assert [(a["name"], a["value"]) for a in data["allocation"]] == [
        ("AAPL", aapl["marketValue"]),
        ("cash", data["totals"]["cash"]),
    ]
    assert data["allocation"][0]["weight"] == aapl["weight"]

    # In euros, any case: the dollar portfolio is the one converted now.
    in_euros = await client.get("/api/v1/overview?currency=eur", headers=who)
    said = (await in_euros.json())["data"]
    assert said["currency"] == "EUR"
    assert [(r["from"], r["to"]) for r in said["rates"]] == [("USD", "EUR")]
    assert said["portfolios"][1]["value"] == "2500.50"


async def test_an_unknown_currency_is_a_422_naming_it_and_no_token_a_401(
    client: Client,
) -> None:
    token, _ = await register(client)
    refused = await client.get("/api/v1/overview?currency=XYZ", headers=bearer(token))
    assert refused.status == 422, await refused.text()
    said = await refused.json()
    assert (said["success"], said["error"]) == (False, "VALIDATION_ERROR")
    assert said["details"]["fields"] == [
        {"field": "currency", "description": "must be one of USD, EUR, GBP, JPY, CHF"}
    ]
    anonymous = await client.get("/api/v1/overview")
    assert anonymous.status == 401, await anonymous.text()
