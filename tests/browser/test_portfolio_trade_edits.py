"""Editing a trade from a portfolio's Trades table in a real browser: the Edit beside the Delete
opens a form under the row, a typo's quantity is corrected and the position and totals are
worked out again with it; a sell raised past what is held is refused, the API's reason shown
under the row, nothing changed; a trade edited elsewhere shows on the open page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import Typos, api, days_ago, opened_with_a_typo, trade_row
from tests.system_harness import Account, System
from tests.utc_days import one_utc_day

pytestmark = pytest.mark.browser

SYMBOL = Typos.SYMBOL


@one_utc_day  # its dates are counted back from today
def test_a_trade_edited_from_the_table_and_a_sell_raised_past_the_shares_refused(
    page: Page, system: System, account: Account
) -> None:
    typos = opened_with_a_typo(page, system, account)
    typo, sold = typos.typo, typos.sold
    quantity = page.get_by_test_id(f"quantity-{SYMBOL}")

    def form(trade_id: str) -> Any:
        return page.locator(f'[data-testid="trade-edit-form"][data-trade-id="{trade_id}"]')

    # The typo's quantity corrected: only it changes, and the page follows.
    trade_row(page, typo["id"]).get_by_test_id("trade-edit").click()
    expect(form(typo["id"]).get_by_test_id("trade-edit-quantity")).to_have_value("100")
    form(typo["id"]).get_by_test_id("trade-edit-quantity").fill("10")
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/v1/trades/{typo['id']}") and r.request.method == "PATCH"
    ) as edited:
        form(typo["id"]).get_by_test_id("trade-edit-save").click()
    assert edited.value.status == 200, edited.value.text()
    assert edited.value.json()["data"]["trade"] == {**typo, "quantity": "10", "amount": "1000.00"}
    expect(form(typo["id"])).to_have_count(0)
    expect(quantity).to_have_text("16")
    expect(page.get_by_test_id("portfolio-cost")).to_have_text("$2,000.00")
    expect(page.get_by_test_id("trade-edited")).to_contain_text(f"Saved the buy of 10 {SYMBOL}")

    # The sell raised past the 20 held: refused, said under its row, nothing changed.
    trade_row(page, sold["id"]).get_by_test_id("trade-edit").click()
    form(sold["id"]).get_by_test_id("trade-edit-quantity").fill("30")
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/v1/trades/{sold['id']}") and r.request.method == "PATCH"
    ) as refused:
        form(sold["id"]).get_by_test_id("trade-edit-save").click()
    answer = refused.value.json()
    assert (refused.value.status, answer["error"]) == (422, "INSUFFICIENT_SHARES"), answer
    assert answer["message"] == (
        f"editing the sell of 4 {SYMBOL} on {days_ago(2)} into the sell of 30 {SYMBOL} on"
        f" {days_ago(2)} would make it impossible: cannot sell 30 {SYMBOL}: only 20 held"
        " (short by 10)"
    )
    expect(form(sold["id"]).get_by_test_id("trade-edit-error")).to_have_text(answer["message"])
    expect(quantity).to_have_text("16")
    form(sold["id"]).get_by_test_id("trade-edit-cancel").click()
    expect(form(sold["id"])).to_have_count(0)

    # Edited elsewhere (another tab, the API): the page hears `trade_updated` and follows.
    api(system, account, "PATCH", f"/api/v1/trades/{sold['id']}", {"quantity": "6"})
    expect(quantity).to_have_text("14")
    expect(trade_row(page, sold["id"]).locator("td").nth(3)).to_have_text("6")
