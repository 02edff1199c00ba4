"""Garbage in a CSV's `split` rows through the REST facade is a 4xx naming the row,
never a 500; and odd but valid spellings of a split row are taken."""

from __future__ import annotations

from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.facade_harness import (
    Client,
    bearer,
    register,
)

pytestmark = SQLITE_ONLY

HEADER = "date,side,symbol,quantity,price,fees,notes,currency\n"
BUY = "2024-01-02T12:00:00Z,buy,NVDA,10,500,,,\n"

GARBAGE = [
    "2024-02-01,split,NVDA,,,,,",
    "2024-02-01,split,NVDA,4,,,,",
    "2024-02-01,split,NVDA,4:1:1,,,,",
    "2024-02-01,split,NVDA,-4:1,,,,",
    "2024-02-01,split,NVDA,4.5:1,,,,",
    "2024-02-01,split,NVDA,1e3:1,,,,",
    "2024-02-01,split,NVDA," + "9" * 5000 + ":1,,,,",
    "2024-02-01,split,NVDA,1:" + "9" * 40 + ",,,,",
    "2024-02-01,split,NVDA,0:1,,,,",
    "2024-02-01,split,NVDA,1000001:1,,,,",
    "2024-02-01,split,NVDA,2:2,,,,",
    "2024-02-01,split,NVDA,4:1,nan,,,",
    "2024-02-01,split,NVDA,4:1,-1,,,",
    "2024-02-01,split,NVDA,4:1,0,,,",
    "2024-02-01,split,NVDA,4:1,1.1234567,,,",
    "2024-02-01,split,NVDA,4:1," + "9" * 100 + ",,,",
    "2024-02-01,split,NVDA,4:1,,1,,",
    "2024-02-01,split,NVDA,4:1,,,note,",
    "2024-02-01,split,NVDA,4:1,,,,EUR",
    "2024-02-30,split,NVDA,4:1,,,,",
    "2099-01-01,split,NVDA,4:1,,,,",
    "0001-01-01,split,NVDA,4:1,,,,",
    "x,split,NVDA,4:1,,,,",
    ",split,NVDA,4:1,,,,",
    "2024-02-01,split,,4:1,,,,",
    "2024-02-01,split," + "A" * 300 + ",4:1,,,,",
    "2024-02-01,split,\x00,4:1,,,,",
    "2024-02-01,splits,NVDA,4:1,,,,",
    "2024-02-01,split,NVDA,4:1,,,,,extra",
    "2024-01-03,split,NVDA,1:100,,,,\n2024-06-01T12:00:00Z,sell,NVDA,10,5,,,",
]


async def test_garbage_in_split_rows_is_a_4xx_naming_the_row(client: Client) -> None:
    token, _ = await register(client)
    who = bearer(token)
    created = await client.post("/api/v1/portfolios", json={"name": "Rows"}, headers=who)
    portfolio_id = (await created.json())["data"]["id"]
    statuses: dict[int, int] = {}
    for row in GARBAGE:
        body = {"portfolioId": portfolio_id, "csv": HEADER + BUY + row + "\n"}
        answer = await client.post("/api/v1/trades:import", json=body, headers=who)
        text = await answer.text()
        assert 400 <= answer.status < 500, (row[:80], answer.status, text[:300])
        said = await answer.json()
        assert said["success"] is False and ("row " in text or "csv" in text), (
            row[:80],
            text[:300],
        )
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    assert sum(statuses.values()) == len(GARBAGE)

    # Odd spacing and case are taken; the split is recorded with the trades.
    odd = HEADER + BUY + "2024-02-01, Split , nvda , 4 : 1 ,,,,\n"
    answer = await client.post(
        "/api/v1/trades:import", json={"portfolioId": portfolio_id, "csv": odd}, headers=who
    )
    assert answer.status in (200, 201), await answer.text()
    listed = await client.get(f"/api/v1/portfolios/{portfolio_id}/splits", headers=who)
    found = (await listed.json())["data"]
    items = found["splits"] if isinstance(found, dict) else found
    assert [(x["symbol"], x["date"], x["numerator"], x["denominator"]) for x in items] == [
        ("NVDA", "2024-02-01", 4, 1)
    ]


async def test_the_import_answers_its_split_rows_in_a_dry_run_and_once_recorded(
    client: Client,
) -> None:
    """The Import page's preview: `splits` beside `trades`, in lowerCamelCase, with what each
    does to the holding (a 1-for-3 of 100 pays the 0.0000000033... share below 8 places at
    3,000,000: 0.01)."""
    token, _ = await register(client)
    who = bearer(token)
    created = await client.post("/api/v1/portfolios", json={"name": "Rows"}, headers=who)
    portfolio_id = (await created.json())["data"]["id"]
    text = HEADER + BUY + "2024-02-01,split,NVDA,1:3,3000000,,,\n"
    shown = ("symbol", "date", "numerator", "denominator", "price", "quantityBefore")

    async def imported(dry_run: bool, key: str = "") -> dict[str, Any]:
        body = {"portfolioId": portfolio_id, "csv": text, "dryRun": dry_run}
        headers = {**who, "Idempotency-Key": key} if key else who
        answer = await client.post("/api/v1/trades:import", json=body, headers=headers)
        assert answer.status in (200, 201), await answer.text()
        data: dict[str, Any] = (await answer.json())["data"]
        return data

    checked = await imported(True)
    assert [t["symbol"] for t in checked["trades"]] == ["NVDA"]
    (would,) = checked["splits"]
    assert {k: would[k] for k in (*shown, "quantityAfter", "cashInLieu")} == {
        "symbol": "NVDA",
        "date": "2024-02-01",
        "numerator": 1,
        "denominator": 3,
        "price": "3000000.00",
        "quantityBefore": "10",
        "quantityAfter": "3.33333333",
        "cashInLieu": "0.01",
    }
    assert (would["id"], would["portfolioId"]) == ("", portfolio_id)
    listed = await client.get(f"/api/v1/portfolios/{portfolio_id}/splits", headers=who)
    assert (await listed.json())["data"] == []  # a dry run records none

    done = await imported(False, key="import-1")
    assert done["imported"] == 1
    assert await imported(False, key="import-1") == done  # a retry gets the answer stored
    (made,) = done["splits"]
    listed = await client.get(f"/api/v1/portfolios/{portfolio_id}/splits", headers=who)
    found = (await listed.json())["data"]
    (kept,) = found["splits"] if isinstance(found, dict) else found
    assert made == kept
    assert made["id"] and {k: made[k] for k in shown} == {k: would[k] for k in shown}
    assert (made["quantityAfter"], made["cashInLieu"]) == ("3.33333333", "0.01")
