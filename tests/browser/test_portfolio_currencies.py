"""Currencies and the parts of a return in a real browser, against the figures the API computes:
a portfolio created in euros from the dashboard's form, its US listing shown in dollars with the
rate into euros, the gain split into capital, dividends, currency and fees, and a benchmark
picked from the performance panel drawing its what-if line beside the value chart."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import amount, api, percent_shown, sign_in
from tests.system_harness import Account, System
from tests.utc_days import one_utc_day

pytestmark = pytest.mark.browser


@one_utc_day  # the page's rate and the API's, read apart, are one day's
def test_a_euro_portfolio_with_its_parts_and_a_benchmark(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account)
    page.get_by_label("Name").fill("Euro savings")
    page.get_by_test_id("create-portfolio-currency").select_option("EUR")
    page.locator("#portfolio-kind").select_option("tracking")
    page.get_by_test_id("create-portfolio-submit").click()
    expect(page.get_by_label("Name")).to_have_value("")
    (created,) = [
        p for p in api(system, account, "GET", "/api/v1/portfolios") if p["name"] == "Euro savings"
    ]
    assert created["currency"] == "EUR"
    portfolio_id = created["id"]
    for side, symbol, quantity, price, fees, at in (
        ("deposit", "", "5000", "", "", "2025-01-02T10:00:00Z"),
        ("buy", "AAPL", "10", "150", "1", "2025-01-02T15:00:00Z"),
        ("buy", "SAP", "5", "180", "0", "2025-03-03T15:00:00Z"),
    ):
        body = {"portfolioId": portfolio_id, "side": side, "quantity": quantity, "executedAt": at}
        body |= {k: v for k, v in (("symbol", symbol), ("price", price), ("fees", fees)) if v}
        api(system, account, "POST", "/api/v1/trades", body)
    positions = {
        p["symbol"]: p
        for p in api(system, account, "GET", f"/api/v1/positions?portfolioId={portfolio_id}")
    }

    sign_in_at = f"/portfolios/{portfolio_id}"
    page.goto(sign_in_at)
    # A dollar listing: its price in dollars and the rate into euros; a euro one: no rate.
    rate = page.get_by_test_id("fx-AAPL")
    expect(rate).to_have_attribute("data-currency", "USD")
    expect(rate).to_contain_text(f"USD→EUR {positions['AAPL']['fxRate']}")
    expect(page.get_by_test_id("fx-SAP")).to_have_count(0)
    expect(page.get_by_test_id("price-AAPL")).to_contain_text("$")

    # The breakdown: the API's parts, which add up to its total.
    with page.expect_response(
        lambda r: "/api/v1/performance" in r.url and "range=all" in r.url
    ) as answered:
        page.get_by_test_id("range-all").click()
    parts = answered.value.json()["data"]["breakdown"]
    total = page.get_by_test_id("breakdown-total")
    expect(total).to_contain_text(re.compile(r"€"))
    shown_total = amount(total.locator("td").first.inner_text())
    assert shown_total == amount(parts["totalGain"])
    for name, key in (("capital", "capitalGain"), ("currency", "currencyGain"), ("fees", "fees")):
        cell = page.get_by_test_id(f"breakdown-{name}").locator("td").first
        assert amount(cell.inner_text()) == amount(parts.get(key, "0"))

    # A benchmark: asked for, summarized, and drawn over the same days.
    with page.expect_response(
        lambda r: "/api/v1/performance" in r.url and "benchmark=SPY" in r.url
    ) as compared:
        page.get_by_test_id("benchmark-picker").select_option("SPY")
    data = compared.value.json()["data"]
    days = len(data["series"])
    assert len(data["benchmark"]["series"]) == days
    expect(page.get_by_test_id("performance-chart")).to_have_attribute(
        "data-compare-points", str(days)
    )
    expect(page.get_by_test_id("benchmark-alpha")).to_have_text(
        percent_shown(data["benchmark"]["alpha"])
    )
    page.get_by_test_id("benchmark-picker").select_option("")
    expect(page.get_by_test_id("benchmark-summary")).to_have_count(0)
