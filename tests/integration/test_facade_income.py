"""The dividend-income report through the real facade, users and portfolio services: the route
its annotation gives, the envelope, lowerCamelCase names and the short enum value, a bad
grouping, period or span refused naming the field, another user's portfolio a 404."""

from __future__ import annotations

from datetime import date, timedelta

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import Client, bearer, portfolio_with_trades, register
from tests.utc_days import one_utc_day, utc_today

pytestmark = SQLITE_ONLY


def quarter_of(day: date) -> tuple[str, str, str]:
    first_month = (day.month - 1) // 3 * 3 + 1
    start = date(day.year, first_month, 1)
    after = date(day.year + 1, 1, 1) if first_month == 10 else date(day.year, first_month + 3, 1)
    label = f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return label, start.isoformat(), (after - timedelta(days=1)).isoformat()


@one_utc_day
async def test_income_through_the_facade(client: Client) -> None:
    today = utc_today()
    bought, paid = today - timedelta(days=100), today - timedelta(days=40)
    rows = (
        ("buy", "100", "50", "0", bought),
        # 15 % withheld: 7.275 of 48.50.
        ("dividend", "100", "0.485", "7.275", paid),
    )
    token, portfolio_id = await portfolio_with_trades(client, "Income", "KO", rows)
    who = bearer(token)
    route = f"/api/v1/portfolios/{portfolio_id}/income"

    answer = await client.get(f"{route}?groupBy=quarter", headers=who)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["success"] is True
    data = body["data"]
    received = {"gross": "48.50", "fees": "7.28", "net": "41.22", "count": 1}
    label, start, end = quarter_of(paid)
    projected = data.pop("projected")
    trailing_start = data["trailing"]["start"]
    assert date.fromisoformat(trailing_start) in (
        today - timedelta(days=364),
        today - timedelta(days=365),
    )
    assert data == {
        "portfolioId": portfolio_id,
        "currency": "USD",
        "groupBy": "quarter",
        "totals": received,
        "periods": [{"label": label, "start": start, "end": end, "income": received}],
        "symbols": [{"symbol": "KO", "income": received, "share": "1.000000"}],
        "trailing": {
            "start": trailing_start,
            "end": today.isoformat(),
            "income": received,
            "heldIncome": "48.50",
            "costBasis": "5000.00",
            "yieldOnCost": "0.009700",
        },
    }
    # KO goes ex-dividend on the 15th of March, June, September and December (the simulated
    # market's calendar): four times in any twelve months, 100 x 0.485 each.
    assert (projected["start"], projected["note"], projected["total"]) == (
        (today + timedelta(days=1)).isoformat(),
        "",
        "194.00",
    )
    assert [{k: v for k, v in d.items() if k != "exDate"} for d in projected["dividends"]] == [
        {
            "symbol": "KO",
            "quantity": "100",
            "perShare": "0.485",
            "currency": "USD",
            "fxRate": "1",
            "amount": "48.50",
        }
    ] * 4
    assert all(date.fromisoformat(d["exDate"]).day == 15 for d in projected["dividends"])

    for query, field in (
        ("groupBy=week", "groupBy"),
        ("from=2025-01-01&to=2024-01-01", "from"),
        ("from=2024-02-30", "from"),
        ("from=0001-01-01&to=9999-12-31&groupBy=month", "from"),
    ):
        refused = await client.get(f"{route}?{query}", headers=who)
        assert refused.status == 422, await refused.text()
        said = await refused.json()
        assert said["error"] == "VALIDATION_ERROR"
        assert [f["field"] for f in said["details"]["fields"]] == [field], query

    other, _ = await register(client)
    hidden = await client.get(route, headers=bearer(other))
    assert hidden.status == 404, await hidden.text()
    assert (await hidden.json())["error"] == "PORTFOLIO_NOT_FOUND"
