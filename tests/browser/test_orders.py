"""The orders section of the trade screen in a real browser: a limit order placed on a paper
portfolio fills on the moving market and its row turns filled live (the `order` socket message),
an open order is cancelled, and a tracking portfolio gets no form but the reason why."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.screens import api, sign_in
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser

SYMBOL = "KO"


def portfolio(system: System, account: Account, **fields: str) -> str:
    created = api(system, account, "POST", "/api/v1/portfolios", {"name": "Paper", **fields})
    return str(created["id"])


def test_a_limit_order_fills_live_and_an_open_one_is_cancelled(
    page: Page, system: System, account: Account
) -> None:
    paper = portfolio(system, account, kind="paper", initialCash="100000")
    quote = api(system, account, "GET", f"/api/v1/stocks/{SYMBOL}/price")
    price = Decimal(quote["price"])
    sign_in(page, account)
    page.goto(f"/trade?portfolio={paper}&symbol={SYMBOL}")
    form = page.get_by_test_id("order-form")
    expect(form).to_be_visible()

    # Until cancelled: a DAY order expires at midnight UTC, which the test may run across.
    page.get_by_test_id("order-tif").select_option("gtc")
    # A limit far below the market: it waits, then is cancelled from its row.
    page.get_by_label("Shares").fill("2")
    page.get_by_label("Limit price").fill(str((price / 2).quantize(Decimal("0.01"))))
    page.get_by_test_id("order-submit").click()
    waiting = page.locator('[data-testid="order-row"][data-status="open"]')
    expect(waiting).to_have_count(1)
    waiting.get_by_test_id("order-cancel").click()
    expect(page.locator('[data-testid="order-row"][data-status="cancelled"]')).to_have_count(1)

    # A limit far above it: the next tick fills it, and the row turns filled by itself.
    page.get_by_label("Shares").fill("3")
    page.get_by_label("Limit price").fill(str(price * 2))
    page.get_by_test_id("order-submit").click()
    filled = page.locator('[data-testid="order-row"][data-status="filled"]')
    expect(filled).to_have_count(1)
    expect(page.get_by_test_id("order-notice")).to_contain_text(f"Filled: bought 3 {SYMBOL} at")
    orders = api(system, account, "GET", f"/api/v1/orders?portfolioId={paper}")
    assert sorted(o["status"] for o in orders) == ["cancelled", "filled"]
    done = next(o for o in orders if o["status"] == "filled")
    trades = api(system, account, "GET", f"/api/v1/trades?portfolioId={paper}")
    (trade,) = [t for t in trades if t.get("orderId") == done["id"]]
    assert trade["id"] == done["tradeId"]
    expect(filled).to_have_attribute("data-order-id", done["id"])

    # A missing stop price is named beside its field before anything is sent.
    page.get_by_test_id("order-type-stop").click()
    page.get_by_test_id("order-submit").click()
    expect(page.get_by_test_id("order-stop-error")).to_be_visible()


def test_a_tracking_portfolio_says_why_it_takes_no_orders(
    page: Page, system: System, account: Account
) -> None:
    tracking = portfolio(system, account, kind="tracking")
    sign_in(page, account)
    page.goto(f"/trade?portfolio={tracking}&symbol={SYMBOL}")
    expect(page.get_by_test_id("orders-tracking")).to_contain_text("paper portfolios")
    expect(page.get_by_test_id("order-form")).to_have_count(0)


def test_a_fill_told_before_the_order_is_answered_keeps_its_notice(
    page: Page, system: System, account: Account
) -> None:
    """An order can fill at the next tick, before its POST answers: the answer's "Placed" must
    not replace the fill's notice (CI met it once). The answer is held here until the page
    shows the fill the socket told it."""
    paper = portfolio(system, account, kind="paper", initialCash="100000")
    price = Decimal(api(system, account, "GET", f"/api/v1/stocks/{SYMBOL}/price")["price"])
    sign_in(page, account)
    page.goto(f"/trade?portfolio={paper}&symbol={SYMBOL}")
    expect(page.get_by_test_id("order-form")).to_be_visible()
    filled = page.locator('[data-testid="order-row"][data-status="filled"]')

    def answer_after_the_fill(route: Route) -> None:
        response = route.fetch()
        filled.wait_for(timeout=15_000)
        route.fulfill(response=response)

    page.route("**/api/v1/orders", answer_after_the_fill)
    page.get_by_test_id("order-tif").select_option("gtc")
    page.get_by_label("Shares").fill("3")
    page.get_by_label("Limit price").fill(str(price * 2))
    page.get_by_test_id("order-submit").click()
    expect(filled).to_have_count(1)
    expect(page.get_by_test_id("order-submit")).to_be_enabled()  # the answer has come
    expect(page.get_by_test_id("order-notice")).to_contain_text(f"Filled: bought 3 {SYMBOL} at")
