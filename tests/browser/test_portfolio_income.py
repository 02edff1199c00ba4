"""A portfolio's dividend income in a real browser: the Income card's bars follow the year and
the grouping chosen, the totals show the tax withheld, the by-symbol table each symbol's share,
the last twelve months and yield on cost, and the simulated market's announced dividends for the
holdings over the next twelve months."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import days_ago, sign_in, tracking_portfolio_with_trades
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser


def test_the_income_card_groups_a_years_dividends_and_projects_the_announced_ones(
    page: Page, system: System, account: Account
) -> None:
    recent = days_ago(30)
    trades = (
        ("buy", "100", "50", "0", "2024-01-10"),
        ("dividend", "100", "0.485", "7.275", "2024-03-15"),  # 15 % withheld
        ("dividend", "100", "0.485", "0", "2024-06-14"),
        ("dividend", "100", "0.485", "0", recent),
    )
    portfolio = tracking_portfolio_with_trades(system, account, "Income", "KO", trades)
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    card = page.get_by_test_id("income")
    # The last twelve months hold the recent dividend alone: 48.50 on a cost of 5,000.
    expect(card.get_by_test_id("income-ttm")).to_contain_text("48.50")
    expect(card.get_by_test_id("income-yield")).to_have_text("0.97 %")
    # KO goes ex-dividend four times a year on the simulated market: 100 x 0.485 each.
    expect(card.get_by_test_id("income-announced")).to_have_count(4)
    expect(card.get_by_test_id("income-announced").first).to_contain_text("KO")
    expect(card.get_by_test_id("income-projected-total")).to_contain_text("194.00")

    card.get_by_test_id("income-year").select_option("2024")
    bars = card.get_by_test_id("income-bar")
    expect(bars).to_have_count(12)
    expect(bars.nth(2)).to_have_attribute("aria-label", "2024-03: $48.50")
    expect(bars.nth(3)).to_have_attribute("aria-label", "2024-04: $0.00")
    expect(card.get_by_test_id("income-gross")).to_contain_text("97.00")
    expect(card.get_by_test_id("income-fees")).to_contain_text("7.28")
    expect(card.get_by_test_id("income-net")).to_contain_text("89.72")
    # The twelve months end with the year chosen: 2024's two dividends on the same cost.
    expect(card.get_by_text("12 months to 2024-12-31")).to_be_visible()
    expect(card.get_by_test_id("income-yield")).to_have_text("1.94 %")
    symbols = card.get_by_test_id("income-symbol")
    expect(symbols).to_have_count(1)
    expect(symbols.first).to_contain_text("KO")
    expect(symbols.first).to_contain_text("97.00")
    expect(symbols.first).to_contain_text("100.00 %")

    card.get_by_test_id("income-grouping").select_option("quarter")
    expect(bars).to_have_count(4)
    expect(bars.nth(1)).to_have_attribute("aria-label", "2024-Q2: $48.50")

    card.get_by_test_id("income-year").select_option("all")
    card.get_by_test_id("income-grouping").select_option("year")
    expect(bars.first).to_have_attribute("aria-label", "2024: $97.00")
    expect(card.get_by_test_id("income-gross")).to_contain_text("145.50")

    card.get_by_test_id("income-year").select_option("2023")
    expect(card.get_by_test_id("income-symbols")).to_contain_text("No dividends in this period.")
    expect(card.get_by_test_id("income-chart")).to_have_count(0)
