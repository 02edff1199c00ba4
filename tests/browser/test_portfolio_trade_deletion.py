"""Deleting a trade from a portfolio's Trades table in a real browser: a Delete asks first (and
a No deletes nothing), a trade recorded by mistake goes and the position and totals are worked
out again without it; a buy a later sell needs is not deleted, and the API's reason is shown
under its row; a trade deleted elsewhere leaves the open page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.screens import Typos, api, days_ago, opened_with_a_typo, trade_row
from tests.system_harness import Account, System
from tests.utc_days import one_utc_day

pytestmark = pytest.mark.browser

SYMBOL = Typos.SYMBOL


@one_utc_day  # its dates are counted back from today
def test_a_trade_deleted_from_the_table_and_one_a_later_sell_needs_refused(
    page: Page, system: System, account: Account
) -> None:
    typos = opened_with_a_typo(page, system, account)
    portfolio, first, typo, sold = typos.portfolio, typos.first, typos.typo, typos.sold
    quantity = page.get_by_test_id(f"quantity-{SYMBOL}")
    rows = page.get_by_test_id("trade-row")
    expect(rows).to_have_count(3)

    # Asked first: No leaves it.
    asked: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    trade_row(page, typo["id"]).get_by_test_id("trade-delete").click()
    expect(rows).to_have_count(3)
    assert asked and asked[0].startswith(f"Delete the buy of 100 {SYMBOL} on "), asked

    # Yes: the typo goes, and the position, the money put in and the list follow.
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/v1/trades/{typo['id']}") and r.request.method == "DELETE"
    ) as deleted:
        trade_row(page, typo["id"]).get_by_test_id("trade-delete").click()
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
        trade_row(page, first["id"]).get_by_test_id("trade-delete").click()
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
