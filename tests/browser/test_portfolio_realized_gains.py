"""A portfolio's realized gains in a real browser: the year selector picks the sales of a tax
year, each closed lot a row with its term, and the year's short, long and total gains."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in, tracking_portfolio_with_trades
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser


def test_the_year_selector_shows_that_years_closed_lots_and_totals(
    page: Page, system: System, account: Account
) -> None:
    trades = (
        ("buy", "10", "100", "5", "2023-01-10"),
        ("buy", "10", "150", "0", "2024-09-01"),
        ("sell", "15", "200", "15", "2024-12-02"),
    )
    portfolio = tracking_portfolio_with_trades(system, account, "Taxes", "AAPL", trades)
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    table = page.get_by_test_id("realized-table")
    expect(table).to_contain_text("No sales in this period.")  # this year's: none

    page.get_by_test_id("realized-year").select_option("2024")
    rows = page.get_by_test_id("realized-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("2023-01-10")
    expect(rows.nth(0)).to_contain_text("long")
    expect(rows.nth(0)).to_contain_text("985.00")
    expect(rows.nth(1)).to_contain_text("short")
    expect(rows.nth(1)).to_contain_text("245.00")
    expect(page.get_by_test_id("realized-long")).to_contain_text("985.00")
    expect(page.get_by_test_id("realized-short")).to_contain_text("245.00")
    expect(page.get_by_test_id("realized-total")).to_contain_text("1,230.00")

    page.get_by_test_id("realized-year").select_option("2023")
    expect(table).to_contain_text("No sales in this period.")
    expect(page.get_by_test_id("realized-total")).to_contain_text("0.00")
