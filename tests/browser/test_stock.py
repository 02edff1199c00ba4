"""A stock's page: its name from the API, a live chart that keeps moving with the stream, and its
daily closes over a period with the change over it, as the API gives them."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import percent_shown, sign_in
from tests.system_harness import Account, System, request
from tests.utc_days import one_utc_day

pytestmark = pytest.mark.browser


def points_over(page: Page, count: int) -> None:
    """Waits (with the expectation timeout as deadline) until the chart holds more than `count`."""
    page.wait_for_function(
        "(count) => Number(document.querySelector('[data-testid=price-chart]')"
        "?.dataset.points) > count",
        arg=count,
    )


def test_a_stocks_chart_keeps_moving_with_the_prices(
    page: Page, system: System, account: Account
) -> None:
    stock = request(
        "GET", f"{system.facade_url}/api/v1/stocks/AAPL", token=account.access_token
    ).body["data"]
    sign_in(page, account)
    page.goto("/stocks/aapl")

    expect(page.get_by_test_id("stock-title")).to_have_text(f"AAPL · {stock['name']}")
    # The profile the exposure report groups by, as GET /api/v1/stocks/AAPL gives it.
    profile = [stock[k] for k in ("assetType", "sector", "industry", "country")]
    assert profile[0] == "Stock" and profile[1] == "Information Technology", profile
    expect(page.get_by_test_id("stock-profile")).to_have_text(" · ".join(profile))
    chart = page.get_by_test_id("price-chart")
    expect(chart).to_have_attribute("aria-label", "AAPL price, live")
    expect(chart.locator("canvas").first).to_be_visible()
    points_over(page, 1)
    before = chart.screenshot()
    drawn = int(chart.get_attribute("data-points") or 0)

    # A step may leave the picture as it was (the same price, a frame not yet painted): the
    # chart must change within a few more steps.
    for more in range(1, 11):
        points_over(page, drawn + more)
        if chart.screenshot() != before:
            break
    else:
        pytest.fail("the chart looked the same after ten more prices")
    expect(page.get_by_test_id("quote-price")).to_have_text(re.compile(r"^\d[\d,]*\.\d{2,6}$"))


@one_utc_day  # the page's ranges and the test's, read apart, end on one day
def test_a_stocks_history_draws_its_closes_and_the_change_over_the_period(
    page: Page, system: System, account: Account
) -> None:
    def history(range_: str) -> dict[str, Any]:
        answer = request(
            "GET",
            f"{system.facade_url}/api/v1/stocks/MSFT/history?range={range_}",
            token=account.access_token,
        )
        assert answer.status == 200, answer.body
        return dict(answer.body["data"])

    sign_in(page, account, at="/stocks/msft")
    chart = page.get_by_test_id("history-chart")
    year = history("1y")
    expect(chart).to_have_attribute("data-points", str(len(year["closes"])))
    expect(chart).to_have_attribute("aria-label", "MSFT daily closes over 1y")

    with page.expect_response(lambda r: "/history" in r.url and "range=3m" in r.url) as shown:
        page.get_by_test_id("range-3m").click()
    # The page's own answer: today's close is the live price, which moves every tick, so a
    # second read a moment later may differ from what the page drew.
    quarter = dict(shown.value.json()["data"])
    closes = quarter["closes"]
    assert closes[:-1] == history("3m")["closes"][:-1]  # the past days' stand
    assert isinstance(closes, list) and len(closes) < len(year["closes"])
    expect(chart).to_have_attribute("data-points", str(len(closes)))
    # As the API states them: the change to its own places (2 to 6), the ratio as a percentage.
    change = Decimal(str(quarter["change"]))
    ratio = percent_shown(str(quarter["changeRatio"]))
    expect(page.get_by_test_id("history-change")).to_have_text(
        f"{'+' if change > 0 else ''}{change:,} ({ratio})"
    )
    expect(page.get_by_test_id("history-span")).to_have_text(
        f"since the close of {closes[0]['date']} (USD)"
    )
