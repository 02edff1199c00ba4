"""Fee-aware rebalancing end to end, on SQLite and PostgreSQL: `feePerTrade`, `feePercent` and
`minTradeValue` in the query of `GET .../rebalance` reach the real portfolio service through the
real facade; each line's `fee`, `totalFees`, `totalValueAfter`, the cash and the weights after
come back net of fees; a trade under the minimum is `BELOW_MINIMUM`; bad costs are a 422 naming
the field, never a 500; without costs the figures are those of the README's example."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.facade_harness import Client, bearer, portfolio_with_buys, register

MONEY_RULE = (
    "must be a number, zero or more, with at most 12 digits before the point and 6 after it"
)
PERCENT_RULE = "must be a percentage, zero or more and less than 100, with at most 4 decimal places"


@pytest.fixture
def portfolio_environment() -> dict[str, str]:
    """A still market: the figures are worked by hand at the opening prices (AAPL 189.50,
    MSFT 415.30), which the harness's market would otherwise move every 50 ms."""
    return {"MOCK_UPDATE_INTERVAL": "3600000"}


async def sixty_forty(client: Client) -> tuple[dict[str, str], str]:
    """The README's example: 10,000 deposited, 30 AAPL at 189.50 and 5 MSFT at 415.30
    (2,238.50 left in cash), targets MSFT 60 and AAPL 40."""
    token, _ = await register(client)
    who = bearer(token)
    buys = (("AAPL", "30", "189.50"), ("MSFT", "5", "415.30"))
    portfolio_id = await portfolio_with_buys(client, token, "Fees", "10000", buys)
    body = {"targets": [{"symbol": "MSFT", "weight": "60"}, {"symbol": "AAPL", "weight": "40"}]}
    put = await client.put(f"/api/v1/portfolios/{portfolio_id}/targets", json=body, headers=who)
    assert put.status == 200, await put.text()
    return who, portfolio_id


async def suggested(client: Client, who: dict[str, str], portfolio_id: str, query: str) -> Any:
    answer = await client.get(f"/api/v1/portfolios/{portfolio_id}/rebalance?{query}", headers=who)
    assert answer.status == 200, await answer.text()
    return (await answer.json())["data"]


def trades(data: Any) -> list[tuple[str, str, str, str, str, str, str]]:
    return [
        (
            x["symbol"],
            x["side"],
            x["tradeQuantity"],
            x["tradeValue"],
            x["fee"],
            x["reason"],
            x["weightAfter"],
        )
        for x in data["lines"]
    ]


async def test_fees_and_a_minimum_shape_the_suggested_trades(client: Client) -> None:
    who, portfolio_id = await sixty_forty(client)
    plain = await suggested(client, who, portfolio_id, "")
    # Without costs: sell 8 AAPL, buy 9 MSFT, 16.80 left, as the README says; no fees.
    assert trades(plain) == [
        ("MSFT", "buy", "9", "3737.70", "0.00", "", "58.14"),
        ("AAPL", "sell", "8", "1516.00", "0.00", "", "41.69"),
    ]
    assert (plain["cashAfter"], plain["cashWeightAfter"], plain["totalFees"]) == (
        "16.80",
        "0.17",
        "0.00",
    )
    assert (plain["feePerTrade"], plain["feePercent"], plain["minTradeValue"]) == (
        "0.00",
        "0",
        "0.00",
    )
    assert plain["totalValueAfter"] == plain["totalValue"] == "10000.00"

    paid = await suggested(client, who, portfolio_id, "feePerTrade=5&feePercent=0.1")
    # AAPL's sell: fee 5 + 1.516 = 6.52 to the cent, it brings 1,509.48; 3,747.98 to spend.
    # MSFT's 9 shares cost 3,737.70 + 8.74 (5 + 3.7377). 1.54 left, 15.26 in fees; the weights
    # after are of 10,000 - 15.26 = 9,984.74 (MSFT 5,814.20 is 58.23 %, AAPL 4,169 41.75 %).
    assert trades(paid) == [
        ("MSFT", "buy", "9", "3737.70", "8.74", "", "58.23"),
        ("AAPL", "sell", "8", "1516.00", "6.52", "", "41.75"),
    ]
    assert (paid["cashAfter"], paid["cashWeightAfter"], paid["totalFees"]) == (
        "1.54",
        "0.02",
        "15.26",
    )
    assert (paid["totalValue"], paid["totalValueAfter"]) == ("10000.00", "9984.74")
    assert (paid["feePerTrade"], paid["feePercent"], paid["minTradeValue"]) == (
        "5.00",
        "0.1",
        "0.00",
    )

    floor = await suggested(
        client, who, portfolio_id, "feePerTrade=5&feePercent=0.1&minTradeValue=1600"
    )
    # The 1,516.00 sell is under 1,600: AAPL stays; 2,238.50 buys 5 MSFT (2,076.50, fee 7.08),
    # 154.92 left; worth 9,992.92 after: AAPL 56.89 %, MSFT 41.56 %, cash 1.55 %.
    assert trades(floor) == [
        ("MSFT", "buy", "5", "2076.50", "7.08", "", "41.56"),
        ("AAPL", "unspecified", "", "", "", "BELOW_MINIMUM", "56.89"),
    ]
    assert (floor["cashAfter"], floor["cashWeightAfter"], floor["totalFees"]) == (
        "154.92",
        "1.55",
        "7.08",
    )
    assert (floor["totalValueAfter"], floor["minTradeValue"]) == ("9992.92", "1600.00")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("feePerTrade=-5", "feePerTrade"),
        ("feePerTrade=five", "feePerTrade"),
        ("feePerTrade=0.0000001", "feePerTrade"),
        ("feePerTrade=1e3", "feePerTrade"),
        ("feePercent=100", "feePercent"),
        ("feePercent=250", "feePercent"),
        ("feePercent=-0.5", "feePercent"),
        ("feePercent=0.12345", "feePercent"),
        ("feePercent=NaN", "feePercent"),
        ("minTradeValue=-1", "minTradeValue"),
        ("minTradeValue=" + "9" * 13, "minTradeValue"),
        ("minTradeValue=Infinity", "minTradeValue"),
    ],
)
async def test_bad_costs_are_a_422_naming_the_field(client: Client, query: str, field: str) -> None:
    token, _ = await register(client)
    who = bearer(token)
    created = await client.post(
        "/api/v1/portfolios", json={"name": "G", "initialCash": "1000"}, headers=who
    )
    portfolio_id = (await created.json())["data"]["id"]
    answer = await client.get(f"/api/v1/portfolios/{portfolio_id}/rebalance?{query}", headers=who)
    assert answer.status == 422, await answer.text()
    said = await answer.json()
    assert (said["success"], said["error"]) == (False, "VALIDATION_ERROR")
    assert [f["field"] for f in said["details"]["fields"]] == [field]
    # The rule stated, not "is not a parameter of this route".
    rule = PERCENT_RULE if field == "feePercent" else MONEY_RULE
    assert [f["description"] for f in said["details"]["fields"]] == [rule]


async def test_extreme_costs_are_answered_never_a_500(client: Client) -> None:
    """The fuzzer's portfolio ids are random (404 before any cost is used): the extremes the
    rules allow, on a portfolio with holdings and targets."""
    who, portfolio_id = await sixty_forty(client)
    for query in (
        "feePerTrade=999999999999.999999&feePercent=99.9999&minTradeValue=999999999999.999999",
        "feePercent=99.9999&fractional=true&cash=999999999999.99999999",
        "feePerTrade=0.000001&feePercent=0.0001&minTradeValue=0.000001&fractional=true",
        "feePerTrade=+0&feePercent=%2000.5000%20&minTradeValue=.5",
    ):
        data = await suggested(client, who, portfolio_id, query)
        assert data["cashAfter"][0] != "-", (query, data["cashAfter"])
    # A flat fee larger than everything: nothing is worth placing, nothing is spent.
    data = await suggested(client, who, portfolio_id, "feePerTrade=999999999999")
    assert [x["reason"] for x in data["lines"]] == ["FEE_EXCEEDS_VALUE", "FEE_EXCEEDS_VALUE"]
    assert (data["cashAfter"], data["totalFees"]) == ("2238.50", "0.00")
