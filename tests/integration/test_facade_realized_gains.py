"""The realized-gains report through the real facade, users and portfolio services: the route its
annotation gives, the envelope with pagination, camelCase names and short enum values, a bad
cost method or period refused naming the field, another user's portfolio a 404."""

from __future__ import annotations

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import Client, bearer, portfolio_with_trades, register

pytestmark = SQLITE_ONLY


async def test_realized_gains_through_the_facade(client: Client) -> None:
    rows = (
        ("buy", "10", "100", "5", "2023-01-10"),
        ("buy", "10", "150", "0", "2024-09-01"),
        ("sell", "15", "200", "15", "2024-12-02"),
    )
    token, portfolio_id = await portfolio_with_trades(client, "Taxes", "AAPL", rows)
    who = bearer(token)
    route = f"/api/v1/portfolios/{portfolio_id}/realized-gains"

    answer = await client.get(f"{route}?from=2024-01-01&to=2024-12-31&limit=1", headers=who)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["success"] is True
    assert body["pagination"] == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}
    data = body["data"]
    assert (data["portfolioId"], data["costMethod"], data["currency"]) == (
        portfolio_id,
        "fifo",
        "USD",
    )
    (first,) = data["gains"]
    assert {k: v for k, v in first.items() if k != "tradeId"} == {
        "symbol": "AAPL",
        "soldOn": "2024-12-02",
        "quantity": "10",
        "proceeds": "1990.00",
        "costBasis": "1005.00",
        "gain": "985.00",
        "acquiredOn": "2023-01-10",
        "holdingDays": 692,
        "term": "long",
        "cashInLieu": False,
    }
    assert data["totals"] == {
        "shortTerm": "245.00",
        "longTerm": "985.00",
        "total": "1230.00",
        "proceeds": "2985.00",
        "costBasis": "1755.00",
    }

    average = await client.get(f"{route}?costMethod=average", headers=who)
    averaged = (await average.json())["data"]
    (row,) = averaged["gains"]
    assert (averaged["costMethod"], row["costBasis"], row["term"], row["acquiredOn"]) == (
        "average",
        "1878.75",
        "",
        "",
    )
    assert "holdingDays" not in row
    assert (averaged["totals"]["total"], averaged["totals"]["shortTerm"]) == ("1106.25", "")

    for query, field in (
        ("costMethod=lifo", "costMethod"),
        ("from=2025-01-01&to=2024-01-01", "from"),
    ):
        refused = await client.get(f"{route}?{query}", headers=who)
        assert refused.status == 422, await refused.text()
        said = await refused.json()
        assert said["error"] == "VALIDATION_ERROR"
        assert [f["field"] for f in said["details"]["fields"]] == [field]

    other, _ = await register(client)
    hidden = await client.get(route, headers=bearer(other))
    assert hidden.status == 404, await hidden.text()
    assert (await hidden.json())["error"] == "PORTFOLIO_NOT_FOUND"  # as every portfolio route
