"""A portfolio's exposure in a real browser: the Exposure card lists its holdings and cash by
sector, then by country, asset type and currency as chosen, highest value first, each bucket
with its weight bar and its symbols."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in, tracking_portfolio_with_buys
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser


def test_the_exposure_card_breaks_the_holdings_down_as_chosen(
    page: Page, system: System, account: Account
) -> None:
    # Values far apart, so the order holds while prices tick: cash about 14,800 dollars, SHEL
    # about 3,500, SPY about 1,100, KO about 600.
    buys = (("KO", "10", "60"), ("SPY", "2", "545"), ("SHEL", "100", "27.85"))
    portfolio = tracking_portfolio_with_buys(system, account, "Spread", "20000", buys)
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    card = page.get_by_test_id("exposure")
    names = card.get_by_test_id("exposure-name")
    expect(names).to_have_text(["Cash", "Energy", "Diversified", "Consumer Staples"])
    symbols = card.get_by_test_id("exposure-symbols")
    expect(symbols).to_have_text(["", "SHEL", "SPY", "KO"])
    expect(card.get_by_test_id("exposure-weight").first).to_contain_text("%")
    expect(card.locator(".exposure-bar")).to_have_count(4)

    card.get_by_test_id("exposure-by-country").click()
    expect(names).to_have_text(["Cash", "United Kingdom", "United States"])
    expect(symbols).to_have_text(["", "SHEL", "SPY, KO"])

    card.get_by_test_id("exposure-by-asset-type").click()
    expect(names).to_have_text(["Cash", "Stock", "ETF"])

    card.get_by_test_id("exposure-by-currency").click()
    expect(names).to_have_text(["Cash", "GBP", "USD"])
    expect(card.get_by_test_id("exposure-by-currency")).to_have_attribute("aria-pressed", "true")
