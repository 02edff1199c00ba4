"""A portfolio's targets and rebalancing in a real browser: targets typed into the Rebalance
card are saved whole (the API upper-cases them) and the suggestion table sells the overweight
and buys the underweight in whole shares, the cash row saying what is left; a symbol listed twice
is refused by the API and its message is shown beside the row it names; with a fee per trade,
a fee percent and a minimum trade, each line's fee, the total fees and the cash left are shown,
and a trade under the minimum is not suggested."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal

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


def test_fees_and_a_minimum_trade_shape_the_suggestions_on_the_page(
    page: Page, system: System, account: Account
) -> None:
    buys = (("AAPL", "30", "189.50"), ("MSFT", "5", "415.30"))
    portfolio = tracking_portfolio_with_buys(system, account, "Fees", "10000", buys)
    targets = {"targets": [{"symbol": "MSFT", "weight": "60"}, {"symbol": "AAPL", "weight": "40"}]}
    api(system, account, "PUT", f"/api/v1/portfolios/{portfolio}/targets", targets)
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    card = page.get_by_test_id("rebalance")
    expect(card.get_by_test_id("rebalance-row")).to_have_count(2)
    expect(card.get_by_test_id("rebalance-total-fees")).to_have_text("$0.00")

    card.get_by_test_id("rebalance-fee-per-trade").fill("5")
    card.get_by_test_id("rebalance-fee-percent").fill("0.1")
    with page.expect_response(lambda r: "/rebalance?" in r.url and "feePerTrade=5" in r.url) as got:
        card.get_by_test_id("rebalance-submit").click()
    assert got.value.status == 200, got.value.text()
    data = got.value.json()["data"]
    # The market moves every 250 ms: the figures are those of the answer the page shows, and
    # each fee is 5 plus 0.1 % of its trade, to the cent (about 6.52 on a sell of 8 AAPL at
    # 189.50 and 8.74 on a buy of 9 MSFT at 415.30).
    fees = Decimal(0)
    for line in data["lines"]:
        assert line["side"] in ("buy", "sell"), line
        value = Decimal(line["tradeValue"])
        fee = (5 + value / 1000).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        assert Decimal(line["fee"]) == fee
        row = card.locator(f'[data-testid="rebalance-row"][data-symbol="{line["symbol"]}"]')
        expect(row.get_by_test_id("rebalance-fee")).to_have_text(f"${fee:,.2f}")
        fees += fee
    assert Decimal("14") < fees < Decimal("17")
    expect(card.get_by_test_id("rebalance-total-fees")).to_have_text(f"${fees:,.2f}")
    # Figures shown to the cent, worked out exactly: they agree within a cent.
    after = Decimal(data["totalValueAfter"])
    assert abs(after - (Decimal(data["totalValue"]) - fees)) <= Decimal("0.01")
    expect(card.get_by_test_id("rebalance-value-after")).to_have_text(f"${after:,.2f}")
    sells = sum(Decimal(x["tradeValue"]) for x in data["lines"] if x["side"] == "sell")
    bought = sum(Decimal(x["tradeValue"]) for x in data["lines"] if x["side"] == "buy")
    left = Decimal(data["cashAfter"])
    assert left >= 0
    assert abs(left - (Decimal("2238.50") + sells - bought - fees)) <= Decimal("0.01")
    expect(card.get_by_test_id("rebalance-cash-after")).to_have_text(f"${left:,.2f} left")

    # A minimum of 1,800: the sell of about 1,516 is not worth placing; the 2,238.50 in cash
    # buys 5 MSFT (about 2,076.50), its fee about 7.08.
    card.get_by_test_id("rebalance-min-trade").fill("1800")
    with page.expect_response(lambda r: "minTradeValue=1800" in r.url) as floored:
        card.get_by_test_id("rebalance-submit").click()
    data = floored.value.json()["data"]
    msft, aapl = data["lines"]
    assert (aapl["reason"], msft["side"], msft["tradeQuantity"]) == ("BELOW_MINIMUM", "buy", "5")
    aapl_row = card.locator('[data-testid="rebalance-row"][data-symbol="AAPL"]')
    expect(aapl_row.get_by_test_id("rebalance-suggestion")).to_have_text("below the minimum trade")
    expect(aapl_row.get_by_test_id("rebalance-fee")).to_have_text("—")
    msft_row = card.locator('[data-testid="rebalance-row"][data-symbol="MSFT"]')
    value = Decimal(msft["tradeValue"])
    expect(msft_row.get_by_test_id("rebalance-suggestion")).to_have_text(f"Buy 5 · ${value:,.2f}")
    fee = (5 + value / 1000).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    expect(msft_row.get_by_test_id("rebalance-fee")).to_have_text(f"${fee:,.2f}")
    expect(card.get_by_test_id("rebalance-total-fees")).to_have_text(f"${fee:,.2f}")
    left = Decimal(data["cashAfter"])
    assert abs(left - (Decimal("2238.50") - value - fee)) <= Decimal("0.01")
    expect(card.get_by_test_id("rebalance-cash-after")).to_have_text(f"${left:,.2f} left")

    # A percent of 100 or more is refused before it is sent.
    card.get_by_test_id("rebalance-fee-percent").fill("100")
    card.get_by_test_id("rebalance-submit").click()
    expect(card.locator("small.error")).to_have_text("must be less than 100")
