"""The Alerts page in a real browser, on a market that moves every 250 ms: alerts a cent above
and below the current price, made from the form, fire within seconds; the toast and the bell's
count show it, the fired list gains it (unread), "mark all read" clears the count; a third alert
is paused, resumed and deleted."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import APIResponse, Page, Route, expect

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
    expect(rows).to_have_count(2)
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


def test_an_alert_made_while_the_list_reloads_after_a_firing_stays_listed(
    page: Page, system: System, account: Account
) -> None:
    # A firing makes the page ask for the alerts again; an answer that comes back after a newer
    # alert was made (a loaded machine) used to replace the list without it.
    sign_in(page, account, at="/alerts")
    rows = page.get_by_test_id("alert-row")
    create(page, "KO", "above", "100000")
    expect(rows).to_have_count(1)

    held: list[tuple[Route, APIResponse]] = []

    def hold_the_list(route: Route) -> None:
        if route.request.method == "GET":
            held.append((route, route.fetch()))  # the list as it is now, delivered later
        else:
            route.continue_()

    page.route(re.compile(r".*/api/v1/alerts\?.*"), hold_the_list)
    price = current_price(system, account, "AAPL")
    # Ten dollars under the price: it fires at the next step.
    create(page, "AAPL", "above", str(price - 10))
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("alert-toast")).to_contain_text("AAPL", timeout=30_000)
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the firing did not make the page ask for its alerts"
    create(page, "MSFT", "above", "100000")
    expect(rows).to_have_count(3)
    page.wait_for_timeout(200)  # the reload the new alert asks for is held too
    for route, answer in held:
        route.fulfill(response=answer)
    page.wait_for_timeout(500)
    expect(rows).to_have_count(3)
    assert sorted(
        page.locator('[data-testid="alert-row"]').evaluate_all(
            "rows => rows.map(r => r.dataset.symbol)"
        )
    ) == ["AAPL", "KO", "MSFT"]
