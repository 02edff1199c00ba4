"""The exposure report through the real facade, users and portfolio services: the route its
annotation gives, the envelope and lowerCamelCase names, GetStock's profile fields, another
user's portfolio a 404."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import Client, bearer, portfolio_with_buys, register

pytestmark = SQLITE_ONLY


@pytest.fixture
def portfolio_environment() -> dict[str, str]:
    """A still market: the test compares a position's value from one request with its sector's
    from the next, and the harness's market moves every 50 ms (ci at 5e62001: 623.60 against
    623.40)."""
    return {"MOCK_UPDATE_INTERVAL": "3600000"}


async def test_exposure_through_the_facade(client: Client) -> None:
    token, _ = await register(client)
    who = bearer(token)
    buys = (("KO", "10", "10"), ("SPY", "1", "10"), ("SHEL", "4", "10"))
    portfolio_id = await portfolio_with_buys(client, token, "Spread", "1000", buys)
    shown = await (await client.get(f"/api/v1/portfolios/{portfolio_id}", headers=who)).json()
    value = {p["symbol"]: p["marketValue"] for p in shown["data"]["positions"]}
    cash = shown["data"]["cash"]

    answer = await client.get(f"/api/v1/portfolios/{portfolio_id}/exposure", headers=who)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["success"] is True
    data = body["data"]
    assert (data["portfolioId"], data["currency"]) == (portfolio_id, "USD")
    assert sorted(data) == [
        "assetTypes",
        "countries",
        "currencies",
        "currency",
        "portfolioId",
        "sectors",
        "totalValue",
    ]
    sectors = {b["name"]: b for b in data["sectors"]}
    assert sectors["Consumer Staples"]["symbols"] == ["KO"]
    assert sectors["Consumer Staples"]["value"] == value["KO"]
    assert sectors["Energy"]["symbols"] == ["SHEL"]
    assert sectors["Diversified"]["symbols"] == ["SPY"]
    assert sectors["Cash"]["value"] == cash
    assert sectors["Cash"]["cash"] is True
    assert [b["name"] for b in data["countries"]][-1:] == ["United Kingdom"]
    assert {b["name"] for b in data["assetTypes"]} == {"Stock", "ETF", "Cash"}
    assert {b["name"] for b in data["currencies"]} == {"USD", "GBP", "Cash"}
    assert sum(Decimal(b["weight"]) for b in data["sectors"]) == 1

    stock = await (await client.get("/api/v1/stocks/SHEL", headers=who)).json()
    assert {k: stock["data"][k] for k in ("sector", "industry", "country", "assetType")} == {
        "sector": "Energy",
        "industry": "Integrated Oil & Gas",
        "country": "United Kingdom",
        "assetType": "Stock",
    }

    other, _ = await register(client)
    theirs = await client.get(f"/api/v1/portfolios/{portfolio_id}/exposure", headers=bearer(other))
    assert theirs.status == 404
    assert (await theirs.json())["error"] == "PORTFOLIO_NOT_FOUND"
