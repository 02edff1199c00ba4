"""A portfolio's stock splits in a real browser: a 4-for-1 recorded on the page multiplies the
position, a reverse split that a later sell outruns is refused with the API's message and adds
nothing, a split deleted on the page gives the shares back; a split a later sell needs cannot be
deleted, and the page says why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import api, sign_in
from tests.system_harness import Account, System
from tests.utc_days import one_utc_day, utc_today

pytestmark = pytest.mark.browser

SYMBOL = "AAPL"


def days_ago(days: int) -> str:
    """A day before today (UTC), as YYYY-MM-DD: in the past whenever the servers read it, even
    after midnight passes during the test."""
    return (utc_today() - timedelta(days=days)).isoformat()


def trade(
    system: System, account: Account, portfolio: str, side: str, quantity: str, price: str, at: str
) -> None:
    body = {
        "portfolioId": portfolio,
        "side": side,
        "symbol": SYMBOL,
        "quantity": quantity,
        "price": price,
        "executedAt": at,
    }
    api(system, account, "POST", "/api/v1/trades", body)


def tracking(system: System, account: Account) -> str:
    created = api(
        system, account, "POST", "/api/v1/portfolios", {"name": "Splits", "kind": "tracking"}
    )
    return str(created["id"])


@one_utc_day  # its dates are counted back from today, twice
def test_a_split_recorded_refused_and_deleted_on_the_page(
    page: Page, system: System, account: Account
) -> None:
    portfolio = tracking(system, account)
    trade(system, account, portfolio, "buy", "10", "100", f"{days_ago(6)}T15:00:00Z")
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    quantity = page.get_by_test_id(f"quantity-{SYMBOL}")
    expect(quantity).to_have_text("10")
    expect(page.get_by_test_id("no-splits")).to_be_visible()

    # A 4-for-1, recorded through the form: the list shows it, the position has four times the
    # shares.
    form = page.get_by_test_id("split-form")
    form.get_by_label("Symbol").fill(SYMBOL)
    page.get_by_test_id(f"suggestion-{SYMBOL}").click()
    expect(form.get_by_label("Symbol")).to_have_value(SYMBOL)
    form.get_by_label("Date (UTC)").fill(days_ago(4))
    form.get_by_label("New shares").fill("4")
    form.get_by_label("For old shares").fill("1")
    with page.expect_response(
        lambda r: r.url.endswith(f"/portfolios/{portfolio}/splits") and r.request.method == "POST"
    ) as recorded:
        page.get_by_test_id("split-submit").click()
    assert recorded.value.status == 201, recorded.value.text()
    assert recorded.value.request.headers.get("idempotency-key")
    rows = page.get_by_test_id("split-row")
    expect(rows).to_have_count(1)
    expect(rows.get_by_test_id("split-date")).to_have_text(days_ago(4))
    expect(rows.get_by_test_id("split-ratio")).to_have_text("4-for-1")
    expect(rows.get_by_test_id("split-shares")).to_have_text("10 → 40")
    expect(rows.get_by_test_id("split-cash")).to_have_text("")
    expect(page.get_by_test_id("split-result")).to_contain_text("10 → 40 shares")
    expect(quantity).to_have_text("40")
    (split,) = api(system, account, "GET", f"/api/v1/portfolios/{portfolio}/splits")
    assert (split["numerator"], split["denominator"], split["quantityAfter"]) == (4, 1, "40")

    # A sell of 5 after the 4-for-1 (bought back at once, so the holding stays 40 and is 10
    # again without the split): a 1-for-10 before it would leave 4 shares to sell 5 of.
    trade(system, account, portfolio, "sell", "5", "30", f"{days_ago(1)}T14:00:00Z")
    trade(system, account, portfolio, "buy", "5", "30", f"{days_ago(1)}T16:00:00Z")
    expect(quantity).to_have_text("40")
    form.get_by_label("Date (UTC)").fill(days_ago(2))
    form.get_by_label("New shares").fill("1")
    form.get_by_label("For old shares").fill("10")
    with page.expect_response(
        lambda r: r.url.endswith(f"/portfolios/{portfolio}/splits") and r.request.method == "POST"
    ) as refused:
        page.get_by_test_id("split-submit").click()
    answer = refused.value.json()
    assert (refused.value.status, answer["error"]) == (422, "SPLIT_CONFLICT"), answer
    assert f"sell of 5 {SYMBOL}" in answer["message"], answer
    expect(page.get_by_test_id("split-error")).to_have_text(answer["message"])
    expect(rows).to_have_count(1)
    expect(quantity).to_have_text("40")
    assert len(api(system, account, "GET", f"/api/v1/portfolios/{portfolio}/splits")) == 1

    # The 4-for-1 taken back from its row: the holding is 10 shares again, and the refusal,
    # given against the history before, is no longer shown.
    page.once("dialog", lambda dialog: dialog.accept())
    rows.get_by_test_id("split-delete").click()
    expect(page.get_by_test_id("no-splits")).to_be_visible()
    expect(quantity).to_have_text("10")
    expect(page.get_by_test_id("split-error")).to_have_count(0)
    assert api(system, account, "GET", f"/api/v1/portfolios/{portfolio}/splits") == []


@one_utc_day
def test_a_split_a_later_sell_needs_is_not_deleted(
    page: Page, system: System, account: Account
) -> None:
    portfolio = tracking(system, account)
    trade(system, account, portfolio, "buy", "10", "100", f"{days_ago(6)}T15:00:00Z")
    body = {"symbol": SYMBOL, "date": days_ago(4), "numerator": 4, "denominator": 1}
    api(system, account, "POST", f"/api/v1/portfolios/{portfolio}/splits", body)
    # 20 of the 40 shares the split made: without it, 10 shares could not cover the sell.
    trade(system, account, portfolio, "sell", "20", "30", f"{days_ago(2)}T15:00:00Z")
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    quantity = page.get_by_test_id(f"quantity-{SYMBOL}")
    expect(quantity).to_have_text("20")
    rows = page.get_by_test_id("split-row")
    expect(rows.get_by_test_id("split-shares")).to_have_text("10 → 40")

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(
        lambda r: "/splits/" in r.url and r.request.method == "DELETE"
    ) as refused:
        rows.get_by_test_id("split-delete").click()
    answer = refused.value.json()
    assert (refused.value.status, answer["error"]) == (422, "SPLIT_CONFLICT"), answer
    assert f"sell of 20 {SYMBOL}" in answer["message"], answer
    expect(page.get_by_test_id("split-delete-error")).to_have_text(answer["message"])
    expect(rows).to_have_count(1)
    expect(quantity).to_have_text("20")
    assert len(api(system, account, "GET", f"/api/v1/portfolios/{portfolio}/splits")) == 1
