"""Deleting a trade from a portfolio's Trades table in a real browser: a Delete asks first (and
a No deletes nothing), a trade recorded by mistake goes and the position and totals are worked
out again without it; a buy a later sell needs is not deleted, and the API's reason is shown
under its row; a trade deleted elsewhere leaves the open page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.screens import api, sign_in
from tests.system_harness import Account, System
from tests.utc_days import one_utc_day, utc_today

pytestmark = pytest.mark.browser

SYMBOL = "AAPL"


def days_ago(days: int) -> str:
    return (utc_today() - timedelta(days=days)).isoformat()


def trade(
    system: System, account: Account, portfolio: str, side: str, quantity: str, days: int
) -> dict[str, Any]:
    body = {
        "portfolioId": portfolio,
        "side": side,
        "symbol": SYMBOL,
        "quantity": quantity,
        "price": "100",
        "executedAt": f"{days_ago(days)}T15:00:00Z",
    }
    recorded: dict[str, Any] = api(system, account, "POST", "/api/v1/trades", body)
    return recorded


@one_utc_day  # its dates are counted back from today
def test_a_trade_deleted_from_the_table_and_one_a_later_sell_needs_refused(
    page: Page, system: System, account: Account
) -> None:
    created = api(
        system, account, "POST", "/api/v1/portfolios", {"name": "Typos", "kind": "tracking"}
    )
    portfolio = str(created["id"])
    first = trade(system, account, portfolio, "buy", "10", 6)
    typo = trade(system, account, portfolio, "buy", "100", 5)  # 10 meant, bought already
    sold = trade(system, account, portfolio, "sell", "4", 2)
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    quantity = page.get_by_test_id(f"quantity-{SYMBOL}")
    expect(quantity).to_have_text("106")
    expect(page.get_by_test_id("portfolio-cost")).to_have_text("$11,000.00")
    rows = page.get_by_test_id("trade-row")
    expect(rows).to_have_count(3)

    def row(trade_id: str) -> Any:
        return page.locator(f'[data-testid="trade-row"][data-trade-id="{trade_id}"]')

    # Asked first: No leaves it.
    asked: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    row(typo["id"]).get_by_test_id("trade-delete").click()
    expect(rows).to_have_count(3)
    assert asked and asked[0].startswith(f"Delete the buy of 100 {SYMBOL} on "), asked

    # Yes: the typo goes, and the position, the money put in and the list follow.
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/v1/trades/{typo['id']}") and r.request.method == "DELETE"
    ) as deleted:
        row(typo["id"]).get_by_test_id("trade-delete").click()
    assert deleted.value.status == 200, deleted.value.text()
    assert deleted.value.json()["data"] == {
        "portfolioId": portfolio,
        "adjustedDividends": [],
        "removedDividends": [],
    }
    expect(rows).to_have_count(2)
    expect(quantity).to_have_text("6")
    expect(page.get_by_test_id("portfolio-cost")).to_have_text("$1,000.00")
    expect(page.get_by_test_id("trade-deleted")).to_contain_text(f"Deleted the buy of 100 {SYMBOL}")

    # The first buy: the sell of 4 needs its shares. Refused, said under its row, nothing gone.
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/v1/trades/{first['id']}") and r.request.method == "DELETE"
    ) as refused:
        row(first["id"]).get_by_test_id("trade-delete").click()
    answer = refused.value.json()
    assert (refused.value.status, answer["error"]) == (422, "INSUFFICIENT_SHARES"), answer
    assert f"would leave the sell of 4 {SYMBOL} on {days_ago(2)} impossible" in answer["message"]
    shown = page.locator(
        f'[data-testid="trade-delete-refusal"][data-trade-id="{first["id"]}"]'
    ).get_by_test_id("trade-delete-error")
    expect(shown).to_have_text(answer["message"])
    expect(rows).to_have_count(2)
    expect(quantity).to_have_text("6")
    listed = api(system, account, "GET", f"/api/v1/trades?portfolioId={portfolio}")
    assert sorted(t["quantity"] for t in listed) == ["10", "4"]

    # The sell deleted elsewhere (another tab, the API): the page hears `trade_deleted` and
    # follows, and the refusal, given against the history before, goes.
    api(system, account, "DELETE", f"/api/v1/trades/{sold['id']}")
    expect(rows).to_have_count(1)
    expect(quantity).to_have_text("10")
    expect(shown).to_have_count(0)
