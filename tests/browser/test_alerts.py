"""The Alerts page in a real browser, on a market that moves every 250 ms: alerts a cent above
and below the current price, made from the form, fire within seconds; the toast and the bell's
count show it, the fired list gains it (unread), "mark all read" clears the count; a third alert
is paused, resumed and deleted."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in
from tests.system_harness import Account, System, request

pytestmark = pytest.mark.browser


def current_price(system: System, account: Account, symbol: str) -> Decimal:
    answer = request(
        "GET", f"{system.facade_url}/api/v1/stocks/{symbol}/price", token=account.access_token
    )
    assert answer.status == 200, answer.body
    return Decimal(answer.body["data"]["price"])


def create(page: Page, symbol: str, condition: str, threshold: str) -> None:
    page.get_by_label("Symbol").fill(symbol)
    page.get_by_label("Condition").select_option(condition)
    page.locator("#alert-threshold").fill(threshold)
    page.get_by_test_id("alert-create").click()


def test_alerts_fire_live_are_read_and_are_paused_resumed_and_deleted(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account, at="/alerts")
    expect(page.get_by_test_id("fired-unread")).to_have_text("0")
    rows = page.get_by_test_id("alert-row")

    # Far away: it will not fire here.
    create(page, "KO", "above", "100000")
    expect(rows).to_have_count(1)
    price = current_price(system, account, "AAPL")
    create(page, "AAPL", "above", str(price + Decimal("0.01")))
    create(page, "AAPL", "below", str(price - Decimal("0.01")))
    expect(rows).to_have_count(3)

    # One of them fires on the moving market: a toast, the bell, the fired list.
    expect(page.get_by_test_id("alert-toast")).to_contain_text(
        re.compile(r"AAPL (rose above|fell below)"), timeout=30_000
    )
    expect(page.get_by_test_id("fired-alert").first).to_contain_text("AAPL")
    expect(page.get_by_test_id("fired-unread")).not_to_have_text("0")
    expect(page.get_by_test_id("alerts-unread").locator(".badge")).to_be_visible()
    page.get_by_test_id("fired-mark-all").click()
    expect(page.get_by_test_id("fired-unread")).to_have_text("0")
    answer = request("GET", f"{system.facade_url}/api/v1/fired-alerts", token=account.access_token)
    assert answer.body["data"]["unread"] in (0, 1)  # the other AAPL alert may fire meanwhile

    far = page.locator('[data-testid="alert-row"][data-symbol="KO"]')
    far.get_by_test_id("alert-toggle").click()
    expect(far.get_by_test_id("alert-state")).to_have_text("paused")
    far.get_by_test_id("alert-toggle").click()
    expect(far.get_by_test_id("alert-state")).to_have_text("active")
    far.get_by_test_id("alert-delete").click()
    expect(far).to_have_count(0)
    listed = request("GET", f"{system.facade_url}/api/v1/alerts", token=account.access_token)
    assert "KO" not in [a["symbol"] for a in listed.body["data"]]
