"""A stock's page: its name from the API, and a live chart that keeps moving with the stream."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in
from tests.system_harness import Account, System, request

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
