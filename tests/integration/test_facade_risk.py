"""GET /api/v1/performance's risk figures through the real facade, users and portfolio
services: the JSON names of `risk` and `riskNote`, their values over a price path the test
stores, `riskFreeRate` taken as a query parameter, and refused with a 422 naming it."""

from __future__ import annotations

import statistics
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

from services.portfolio.domain import present_ratio
from services.portfolio.repository import PriceRepository
from services.runtime.db import Database
from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    bearer,
    create_portfolio,
    register,
)
from tests.utc_days import one_utc_day, utc_today

pytestmark = SQLITE_ONLY

D = Decimal
RISK_FIELDS = {
    "maxDrawdown",
    "drawdownPeakDate",
    "drawdownTroughDate",
    "drawdownRecoveryDate",
    "volatility",
    "sharpeRatio",
    "sortinoRatio",
    "riskFreeRate",
    "tradingDays",
}


async def store_closes(url: str, symbol: str, closes: dict[date, Decimal]) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            for day, close in closes.items():
                await PriceRepository(session).record(symbol, day, close)
    finally:
        await db.close()


async def post_trade(client: Client, token: str, **trade: str) -> None:
    response = await client.post("/api/v1/trades", json=trade, headers=bearer(token))
    assert response.status == 201, await response.text()


@one_utc_day  # the series ends on today: the server's day
async def test_performance_states_its_risk_figures_in_json(
    client: Client,
    portfolio_database_url: str,
) -> None:
    token, _ = await register(client)
    portfolio_id = await create_portfolio(client, token)
    today = utc_today()
    # 24 weekdays of closes ending before today: 100, 120, 90 (a 25 % fall), 120 again, then
    # 130 and 125 in turn. Everything is sold on the last of them, so today's live quote (the
    # simulated market keeps moving here) values nothing held.
    weekdays = [
        d for d in (today - timedelta(days=n) for n in range(45, 0, -1)) if d.weekday() < 5
    ][-24:]
    path = [D(100), D(120), D(90), D(120)] + [D(125) if n % 2 else D(130) for n in range(20)]
    closes = dict(zip(weekdays, path, strict=True))
    carried = {
        weekdays[0] + timedelta(days=n): closes[
            max(d for d in weekdays if d <= weekdays[0] + timedelta(days=n))
        ]
        for n in range((weekdays[-1] - weekdays[0]).days + 1)
    }
    await store_closes(portfolio_database_url, "KO", carried)
    first, last = weekdays[0], weekdays[-1]
    for side, symbol, quantity, price, day in (
        ("deposit", "", "1000", "", first),
        ("buy", "KO", "10", "100", first),
        ("sell", "KO", "10", str(path[-1]), last),
    ):
        await post_trade(
            client,
            token,
            portfolioId=portfolio_id,
            side=side,
            symbol=symbol,
            quantity=quantity,
            price=price,
            executedAt=f"{day}T15:00:00Z",
        )

    response = await client.get(
        f"/api/v1/performance?portfolioId={portfolio_id}&range=all&riskFreeRate=0.04",
        headers=bearer(token),
    )
    assert response.status == 200, await response.text()
    body = (await response.json())["data"]
    risk = body["risk"]
    assert set(risk) == RISK_FIELDS
    # Trading-day returns: the first day's 0 (bought at its close), the path's, and a 0 for
    # each weekday after the sale (cash); weekends are chained in and add none.
    weekdays_after = sum(
        1 for n in range(1, (today - last).days + 1) if (last + timedelta(days=n)).weekday() < 5
    )
    returns = [D(0)] + [b / a - 1 for a, b in pairwise(path)] + [D(0)] * weekdays_after
    # A weekend that ends the range (today a Saturday or Sunday) is chained into Friday's: 0.
    root_year = D(252).sqrt()
    volatility = statistics.stdev(returns) * root_year
    excess = sum(returns, D(0)) / len(returns) * 252 - D("0.04")
    downside = (
        sum((((r - D("0.04") / 252) ** 2) for r in returns if r < D("0.04") / 252), D(0))
        / len(returns)
    ).sqrt() * root_year
    assert risk == {
        "maxDrawdown": "0.250000",
        "drawdownPeakDate": weekdays[1].isoformat(),
        "drawdownTroughDate": weekdays[2].isoformat(),
        "drawdownRecoveryDate": weekdays[3].isoformat(),
        "volatility": present_ratio(volatility),
        "sharpeRatio": present_ratio(excess / volatility),
        "sortinoRatio": present_ratio(excess / downside),
        "riskFreeRate": "0.040000",
        "tradingDays": len(returns),
    }
    assert body["riskNote"] == ""

    refused = await client.get(
        f"/api/v1/performance?portfolioId={portfolio_id}&riskFreeRate=1", headers=bearer(token)
    )
    assert refused.status == 422, await refused.text()
    said = await refused.json()
    assert said["error"] == "VALIDATION_ERROR"
    assert [f["field"] for f in said["details"]["fields"]] == ["riskFreeRate"]


async def test_a_new_portfolio_says_why_its_risk_figures_are_empty(
    client: Client,
) -> None:
    token, _ = await register(client)
    portfolio_id = await create_portfolio(client, token)
    response = await client.get(
        f"/api/v1/performance?portfolioId={portfolio_id}", headers=bearer(token)
    )
    assert response.status == 200, await response.text()
    body = (await response.json())["data"]
    assert body["risk"] == {
        "maxDrawdown": "",
        "drawdownPeakDate": "",
        "drawdownTroughDate": "",
        "drawdownRecoveryDate": "",
        "volatility": "",
        "sharpeRatio": "",
        "sortinoRatio": "",
        "riskFreeRate": "0.000000",
        "tradingDays": 0,
    }
    assert body["riskNote"] == (
        "volatility, Sharpe and Sortino need at least 20 trading-day returns; this range has 0"
    )
