"""The Watchlists page in a real browser: a list made from the form shows each symbol's price
and day change, moving with the market's ticks (every 250 ms here); reordered, renamed, a symbol
added and one removed, each change as the API then stores it; then deleted."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in
from tests.system_harness import Account, System, request

pytestmark = pytest.mark.browser


def stored(system: System, account: Account) -> list[tuple[str, list[str]]]:
    answer = request("GET", f"{system.facade_url}/api/v1/watchlists", token=account.access_token)
    assert answer.status == 200, answer.body
    return [(w["name"], w["symbols"]) for w in answer.body["data"]]


def test_a_watchlist_is_made_followed_live_reordered_renamed_edited_and_deleted(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account, at="/watchlists")
    page.get_by_label("Name").fill("Tech")
    page.get_by_label("Symbols").fill("aapl, KO")
    page.get_by_test_id("watchlist-create").click()
    rows = page.get_by_test_id("watchlist-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-symbol", "AAPL")
    assert stored(system, account) == [("Tech", ["AAPL", "KO"])]

    # Live: the price cell changes as ticks arrive (the list came with the first quotes).
    cell = page.locator('[data-symbol="AAPL"] [data-testid="watchlist-price"]')
    expect(cell).to_have_text(re.compile(r"^\d[\d,]*\.\d{2}"))
    first = cell.inner_text()
    expect(cell).not_to_have_text(first, timeout=15_000)
    expect(page.locator('[data-symbol="KO"] [data-testid="watchlist-change"]')).to_have_text(
        re.compile(r"\(.*%\)")
    )

    page.get_by_role("button", name="Move KO up").click()
    expect(rows.nth(0)).to_have_attribute("data-symbol", "KO")
    page.get_by_test_id("watchlist-rename").click()
    page.get_by_test_id("watchlist-rename-input").fill("Favourites")
    page.get_by_test_id("watchlist-rename-save").click()
    expect(page.get_by_test_id("watchlist-name")).to_have_text("Favourites")
    page.get_by_test_id("watchlist-add-input").fill("msft")
    page.get_by_test_id("watchlist-add").click()
    expect(rows).to_have_count(3)
    page.get_by_role("button", name="Remove AAPL").click()
    expect(rows).to_have_count(2)
    assert stored(system, account) == [("Favourites", ["KO", "MSFT"])]

    # An unknown symbol is refused, naming it; the list is unchanged.
    page.get_by_test_id("watchlist-add-input").fill("NOPE")
    page.get_by_test_id("watchlist-add").click()
    expect(page.get_by_test_id("watchlist-card-error")).to_contain_text("NOPE")
    assert stored(system, account) == [("Favourites", ["KO", "MSFT"])]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("watchlist-delete").click()
    expect(page.get_by_test_id("watchlist")).to_have_count(0)
    assert stored(system, account) == []
