"""A portfolio's targets and rebalancing in a real browser: targets typed into the Rebalance
card are saved whole (the API upper-cases them) and the suggestion table sells the overweight
and buys the underweight in whole shares, the cash row saying what is left; a symbol listed twice
is refused by the API and its message is shown beside the row it names."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import api, sign_in, tracking_portfolio_with_buys
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser


def test_targets_saved_and_trades_suggested_on_the_page(
    page: Page, system: System, account: Account
) -> None:
    buys = (("AAPL", "30", "189.50"), ("MSFT", "5", "415.30"))
    portfolio = tracking_portfolio_with_buys(system, account, "Balanced", "10000", buys)
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    card = page.get_by_test_id("rebalance")
    # No targets yet: nothing is suggested (not every holding sold into a 100 % cash target).
    expect(card.get_by_test_id("rebalance-row")).to_have_count(2)
    for symbol in ("AAPL", "MSFT"):
        row = card.locator(f'[data-testid="rebalance-row"][data-symbol="{symbol}"]')
        expect(row.get_by_test_id("rebalance-suggestion")).to_have_text("no targets set")

    # A box to tick, not a text field's width and height (it was drawn 40 px square).
    box = card.get_by_test_id("rebalance-fractional").bounding_box()
    assert box is not None and box["width"] <= 24 and box["height"] <= 24, box

    card.get_by_label("Symbol 1").fill("msft")
    card.get_by_label("Target percent 1").fill("60")
    card.get_by_test_id("target-add").click()
    card.get_by_label("Symbol 2").fill("aapl")
    card.get_by_label("Target percent 2").fill("40")
    expect(card.get_by_test_id("targets-sum")).to_have_text("0.00 % in cash")
    with page.expect_response(
        lambda r: r.url.endswith(f"/portfolios/{portfolio}/targets") and r.request.method == "PUT"
    ) as saved:
        card.get_by_test_id("targets-save").click()
    assert saved.value.status == 200, saved.value.text()
    expect(card.get_by_test_id("targets-saved")).to_have_text("Targets saved; 0 % in cash.")
    expect(card.get_by_label("Symbol 1")).to_have_value("MSFT")

    rows = card.get_by_test_id("rebalance-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-symbol", "MSFT")
    msft, aapl = rows.nth(0), rows.nth(1)
    # About 5,685 of 10,000 in AAPL against 40 %; MSFT about 21 % against 60 %.
    expect(aapl.get_by_test_id("rebalance-suggestion")).to_have_text(re.compile(r"^Sell \d+ · "))
    expect(msft.get_by_test_id("rebalance-suggestion")).to_have_text(re.compile(r"^Buy \d+ · "))
    expect(card.get_by_test_id("rebalance-cash-after")).to_have_text(re.compile(r" left$"))

    # MSFT listed again in another case: the API names the third row, the page shows it there.
    card.get_by_test_id("target-add").click()
    card.get_by_label("Symbol 3").fill("Msft")
    card.get_by_label("Target percent 1").fill("50")
    card.get_by_label("Target percent 3").fill("5")
    with page.expect_response(
        lambda r: r.url.endswith(f"/portfolios/{portfolio}/targets") and r.request.method == "PUT"
    ) as refused:
        card.get_by_test_id("targets-save").click()
    assert refused.value.status == 422, refused.value.text()
    third = card.get_by_test_id("target-row").nth(2)
    expect(third.locator("small.error")).to_contain_text("lists MSFT again (first at targets[0])")
    kept = api(system, account, "GET", f"/api/v1/portfolios/{portfolio}/targets")
    assert kept["targets"] == [
        {"symbol": "MSFT", "weight": "60"},
        {"symbol": "AAPL", "weight": "40"},
    ]
