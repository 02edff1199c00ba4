"""A portfolio's page in a real browser, against figures the API computes: FIFO and average
cost side by side, TWR by period, the risk figures (and why they are empty for a new
portfolio), the trade history a page at a time, the CSV and JSON exports, and the dashboard's
allocation and value chart for the same portfolio."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.screens import amount, api, fixed_shown, percent_shown, sign_in
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser

# Three AAPL trades whose realized gain depends on the cost method, then 22 small KO buys: 25
# trades, two pages of history.
LOTS = [
    ("buy", "AAPL", "10", "100", "2025-01-02T15:00:00Z"),
    ("buy", "AAPL", "10", "200", "2025-06-02T15:00:00Z"),
    ("sell", "AAPL", "10", "150", "2025-09-01T15:00:00Z"),
] + [("buy", "KO", "1", "60", f"2025-10-{day:02d}T15:00:00Z") for day in range(1, 23)]


def performance_of(response: Response, *, period: str) -> bool:
    """The performance API's answer for `period`."""
    return "/api/v1/performance" in response.url and f"range={period}" in response.url


@pytest.fixture
def portfolio(system: System, account: Account) -> str:
    created = api(
        system, account, "POST", "/api/v1/portfolios", {"name": "History", "kind": "tracking"}
    )
    for side, symbol, quantity, price, at in LOTS:
        api(
            system,
            account,
            "POST",
            "/api/v1/trades",
            {
                "portfolioId": created["id"],
                "side": side,
                "symbol": symbol,
                "quantity": quantity,
                "price": price,
                "executedAt": at,
            },
        )
    return str(created["id"])


def test_cost_methods_periods_history_and_exports(
    page: Page, system: System, account: Account, portfolio: str
) -> None:
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    # FIFO sold the 100 lot: 10 x (150 - 100) realized; average cost sold at 150: nothing.
    expect(page.get_by_test_id("quantity-AAPL")).to_have_text("10")
    expect(page.get_by_test_id("realized-AAPL")).to_have_text(re.compile(r"\$500\.00"))
    page.get_by_test_id("cost-method-average").click()
    expect(page.get_by_test_id("realized-AAPL")).to_have_text(re.compile(r"\$0\.00"))
    page.get_by_test_id("cost-method-fifo").click()
    expect(page.get_by_test_id("realized-AAPL")).to_have_text(re.compile(r"\$500\.00"))

    # The period selector asks the API for that period and shows its TWR.
    for period in ("all", "1y"):
        with page.expect_response(functools.partial(performance_of, period=period)) as answered:
            page.get_by_test_id(f"range-{period}").click()
        said = answered.value.json()["data"]
        expect(page.get_by_test_id("twr")).to_have_text(percent_shown(said["timeWeightedReturn"]))
        expect(page.get_by_test_id("xirr-short")).to_have_count(0)  # a year or more
        # The XIRR's cell holds its label and its value, nothing more (a year or more once
        # printed a stray "0" under it: the days of a short range, none).
        xirr = percent_shown(said["moneyWeightedReturn"])
        expect(page.get_by_test_id("xirr").locator("xpath=..")).to_have_text(f"XIRR{xirr}")

    # Under a year, the annualized XIRR says how many days it was annualized from.
    with page.expect_response(
        lambda r: "/api/v1/performance" in r.url and "range=1m" in r.url
    ) as answered:
        page.get_by_test_id("range-1m").click()
    said = answered.value.json()["data"]
    assert said["moneyWeightedReturn"], said
    days = (date.fromisoformat(said["endDate"]) - date.fromisoformat(said["startDate"])).days
    expect(page.get_by_test_id("xirr-short")).to_have_text(f"annualized from {days} days")

    # 25 trades: 20 on the first page, newest first; the other 5 on the second.
    rows = page.get_by_test_id("trade-row")
    expect(rows).to_have_count(20)
    expect(page.get_by_test_id("trades-page")).to_contain_text("Page 1 of 2")
    page.get_by_test_id("trades-next").click()
    expect(rows).to_have_count(5)
    expect(page.get_by_test_id("trades-page")).to_contain_text("Page 2 of 2")
    expect(rows.filter(has_text="AAPL")).to_have_count(3)

    # Exports: the files the browser saves hold the trades and positions.
    with page.expect_download() as got_csv:
        page.get_by_test_id("export-csv").click()
    text = Path(got_csv.value.path()).read_text()
    trade_rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0][:4] == "2025"]
    assert len(trade_rows) == len(LOTS)
    assert "AAPL" in text and "KO" in text
    with page.expect_download() as got_json:
        page.get_by_test_id("export-json").click()
    exported = json.loads(Path(got_json.value.path()).read_text())
    assert len(exported["trades"]) == len(LOTS)
    held = {p["symbol"]: p["quantity"] for p in exported["positions"]}
    assert amount(held["AAPL"]) == 10
    assert amount(held["KO"]) == 22


def test_the_performance_card_shows_the_risk_figures_or_why_they_are_empty(
    page: Page, system: System, account: Account, portfolio: str
) -> None:
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    with page.expect_response(
        lambda r: "/api/v1/performance" in r.url and "range=all" in r.url
    ) as answered:
        page.get_by_test_id("range-all").click()
    said = answered.value.json()["data"]
    risk = said["risk"]
    # Held since January 2025 in a market that moves: every figure is defined.
    assert risk["tradingDays"] >= 20 and risk["volatility"] and risk["sharpeRatio"], said
    card = page.get_by_test_id("risk-summary")
    expect(card.get_by_test_id("max-drawdown")).to_have_text(
        percent_shown(risk["maxDrawdown"], signed=False)
    )
    recovered = risk["drawdownRecoveryDate"]
    expect(card.get_by_test_id("drawdown-days")).to_have_text(
        f"{risk['drawdownPeakDate']} → {risk['drawdownTroughDate']}, "
        + (f"recovered {recovered}" if recovered else "not recovered")
    )
    expect(card.get_by_test_id("volatility")).to_have_text(
        percent_shown(risk["volatility"], signed=False)
    )
    expect(card.get_by_test_id("sharpe")).to_have_text(fixed_shown(risk["sharpeRatio"]))
    expect(card.get_by_test_id("sortino")).to_have_text(fixed_shown(risk["sortinoRatio"]))
    expect(card.get_by_test_id("risk-note")).to_have_count(0)

    # A portfolio with one deposit has no returns to measure: dashes, and the API's reason.
    fresh = api(system, account, "POST", "/api/v1/portfolios", {"name": "Fresh"})
    api(
        system,
        account,
        "POST",
        "/api/v1/trades",
        {"portfolioId": fresh["id"], "side": "deposit", "quantity": "100"},
    )
    with page.expect_response(lambda r: "/api/v1/performance" in r.url) as answered:
        page.goto(f"/portfolios/{fresh['id']}")
    note = answered.value.json()["data"]["riskNote"]
    assert note.startswith("volatility, Sharpe and Sortino need at least 20"), note
    expect(card.get_by_test_id("risk-note")).to_have_text(note)
    for figure in ("volatility", "sharpe", "sortino"):
        expect(card.get_by_test_id(figure)).to_have_text("—")


def test_the_dashboard_draws_the_allocation_and_the_value_over_time(
    page: Page, system: System, account: Account, portfolio: str
) -> None:
    sign_in(page, account)
    allocation = page.get_by_test_id("allocation")
    expect(allocation).to_contain_text("AAPL")
    expect(allocation).to_contain_text("KO")
    # The chart draws the API's series for the chosen range: one point per day it holds.
    with page.expect_response(
        lambda r: "/api/v1/performance" in r.url and "range=all" in r.url
    ) as answered:
        page.get_by_test_id("range-all").click()
    series = answered.value.json()["data"].get("series", [])
    assert len(series) > 100  # held since January 2025
    chart = page.get_by_test_id("value-chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d{2,}$"))
