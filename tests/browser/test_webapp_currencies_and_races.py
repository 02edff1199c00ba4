"""Money in several currencies and the races of a slow network, in a real browser: a euro
portfolio's live total converting its dollar stock's ticks, the dashboard adding a dollar and a
euro portfolio in one currency, a deposit reported and a dividend asked for in their currencies,
a dollar trade shown in dollars in a euro portfolio, the trade page's cash following a buy, the
query of a page asked for signed out kept through signing in; and, with the API's answers held
back, two symbols added quickly to a watchlist both kept, typing during a save kept, the
conversation opened last the one shown, and a CSV import retried after a lost answer imported
once; and an alert's cool-down that is not a number refused on its field.

A slow network is `page.route` holding the API's answer until the test lets it go (the order the
requests reach the API is the order the page sent them)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.screens import amount, api, sign_in, trade_row
from tests.system_harness import Account, System
from tests.utc_days import one_utc_day

pytestmark = pytest.mark.browser

EURO = "\N{EURO SIGN}"
# A buy of 10 AAPL at $150: a dollar holding, for the euro portfolios.
TEN_AAPL = {"side": "buy", "symbol": "AAPL", "quantity": "10", "price": "150"}


def portfolio(system: System, account: Account, **body: Any) -> dict[str, Any]:
    return dict(api(system, account, "POST", "/api/v1/portfolios", body))


def trade(system: System, account: Account, **body: Any) -> dict[str, Any]:
    return dict(api(system, account, "POST", "/api/v1/trades", body))


def read(system: System, account: Account, portfolio_id: str) -> dict[str, Any]:
    return dict(api(system, account, "GET", f"/api/v1/portfolios/{portfolio_id}"))


def hold(page: Page, pattern: str, method: str) -> list[Route]:
    """Holds every `method` request to `pattern` until the test continues it."""
    held: list[Route] = []

    def handler(route: Route) -> None:
        if route.request.method == method:
            held.append(route)
        else:
            route.continue_()

    page.route(pattern, handler)
    return held


def wait_for(page: Page, held: list[Route], count: int) -> None:
    for _ in range(100):
        if len(held) >= count:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"{len(held)} held requests, expected {count}")


# ---- currencies -------------------------------------------------------------------------------


def test_a_euro_portfolios_live_total_converts_its_dollar_holding(
    page: Page, system: System, account: Account
) -> None:
    """A EUR portfolio holding AAPL (a USD listing): ticks are in dollars, the total in euros."""
    euro = portfolio(system, account, name="Euro", kind="tracking", currency="EUR")
    trade(system, account, portfolioId=euro["id"], side="deposit", quantity="1500")
    trade(system, account, portfolioId=euro["id"], **TEN_AAPL)
    sign_in(page, account, at=f"/portfolios/{euro['id']}")
    # A tick has arrived (the positions row says so): the totals have moved with ticks too.
    expect(page.get_by_test_id("price-AAPL")).not_to_have_attribute("data-time", "")
    page.wait_for_timeout(500)
    shown = Decimal(page.get_by_test_id("portfolio-total").get_attribute("data-value") or "0")
    expected = Decimal(read(system, account, euro["id"])["totalValue"])
    assert abs(shown - expected) <= expected * Decimal("0.02"), (shown, expected)


@one_utc_day  # the dashboard's rate and the test's, read apart, are one day's
def test_the_dashboard_total_does_not_add_euros_to_dollars(
    page: Page, system: System, account: Account
) -> None:
    portfolio(system, account, name="Dollars", kind="paper", initialCash="1000", currency="USD")
    portfolio(system, account, name="Euros", kind="paper", initialCash="1000", currency="EUR")
    rate = Decimal(api(system, account, "GET", "/api/v1/fx?from=EUR&to=USD")["rate"])
    sign_in(page, account)
    total = page.get_by_test_id("dashboard-total")
    expect(page.get_by_test_id("portfolio-link")).to_have_count(2)
    # In the first portfolio's currency: $1,000 and EUR 1,000 are worth 1000 + 1000 x rate
    # dollars, not $2,000.00.
    expect(total).to_have_attribute("data-currency", "USD")
    expected = Decimal(1000) + Decimal(1000) * rate
    shown = amount(total.inner_text())
    assert total.inner_text().startswith("$"), total.inner_text()
    assert abs(shown - expected) <= Decimal("0.01"), (total.inner_text(), expected)
    # Each currency's part is named beside it.
    expect(page.get_by_test_id("dashboard-currencies")).to_have_text(
        "$1,000.00 in USD · €1,000.00 in EUR, converted into USD at today's rates."
    )


def test_a_deposit_into_a_euro_portfolio_is_reported_in_euros(
    page: Page, system: System, account: Account
) -> None:
    euro = portfolio(system, account, name="Euro", kind="paper", initialCash="100", currency="EUR")
    sign_in(page, account)
    page.goto(f"/trade?portfolio={euro['id']}&side=deposit")
    expect(page.get_by_text("In EUR, the portfolio's currency, to the cent.")).to_be_visible()
    page.get_by_label("Amount").fill("500")
    page.get_by_test_id("trade-submit").click()
    expect(page.get_by_test_id("trade-result")).to_have_text(
        f"Deposited {EURO}500.00 in Euro. See the portfolio"
    )
    assert Decimal(read(system, account, euro["id"])["cash"]) == Decimal("600.00")


def test_a_dividend_is_asked_for_in_the_stocks_currency(
    page: Page, system: System, account: Account
) -> None:
    """The book takes a dividend in the stock's currency and converts it at its day's rate
    (README, Dividends): the form asks for KO's in dollars, not in the euro portfolio's."""
    euro = portfolio(system, account, name="Euro", kind="paper", initialCash="1000", currency="EUR")
    before = Decimal(read(system, account, euro["id"])["cash"])
    sign_in(page, account)
    page.goto(f"/trade?portfolio={euro['id']}&symbol=KO&side=dividend")
    expect(page.get_by_text("In USD, the stock's currency, to the cent.")).to_be_visible()
    page.get_by_label("Amount").fill("12")
    page.get_by_test_id("trade-submit").click()
    expect(page.get_by_test_id("trade-result")).to_contain_text(
        "Recorded a dividend of $12.00 from KO in Euro."
    )
    trades = api(system, account, "GET", f"/api/v1/trades?portfolioId={euro['id']}")
    (dividend,) = [t for t in trades if t["side"] == "dividend"]
    assert (dividend["symbol"], dividend["currency"], dividend["amount"]) == ("KO", "USD", "12.00")
    # The cash took it in euros, at the trade's rate.
    after = Decimal(read(system, account, euro["id"])["cash"])
    converted = Decimal(12) * Decimal(dividend["fxRate"])
    assert abs(after - before - converted) <= Decimal("0.01"), (before, after, converted)
    assert Decimal(dividend["fxRate"]) != 1


def test_a_dollar_trade_in_a_euro_portfolio_is_not_shown_in_euros(
    page: Page, system: System, account: Account
) -> None:
    """A trade keeps its price, fees and amount in the stock's currency (README, Currencies);
    the trades table prints them with the portfolio's euro sign."""
    euro = portfolio(system, account, name="Euro", kind="tracking", currency="EUR")
    made = trade(system, account, portfolioId=euro["id"], **TEN_AAPL, fees="1")
    assert (made["currency"], made["amount"]) == ("USD", "1500.00")
    sign_in(page, account, at=f"/portfolios/{euro['id']}")
    row = trade_row(page, made["id"])
    expect(row).to_be_visible()
    text = row.inner_text()
    assert f"{EURO}" not in text, text
    assert "$1.00" in text and "$1,500.00" in text, text


# ---- what the page shows follows the API --------------------------------------------------------


def test_the_trade_pages_portfolio_cash_follows_a_buy(
    page: Page, system: System, account: Account
) -> None:
    paper = portfolio(system, account, name="Paper", kind="paper", initialCash="10000")
    sign_in(page, account)
    page.goto(f"/trade?portfolio={paper['id']}&symbol=AAPL")
    choice = page.get_by_test_id("trade-portfolio").locator("option:checked")
    expect(choice).to_have_text("Paper ($10,000.00 cash)")
    page.get_by_label("Quantity").fill("10")
    page.get_by_test_id("trade-submit").click()
    expect(page.get_by_test_id("trade-result")).to_contain_text("Bought 10 AAPL")
    cash = Decimal(read(system, account, paper["id"])["cash"])
    assert cash < 10000
    expect(choice).to_have_text(f"Paper (${cash:,.2f} cash)")


def test_signing_in_returns_to_the_asked_page_with_its_query(page: Page, account: Account) -> None:
    """README: "a page asked for signed out comes back after signing in": with its query (a link
    to /trade?symbol=KO&side=sell keeps its symbol and side)."""
    sign_in(page, account, at="/trade?symbol=KO&side=sell")
    expect(page).to_have_url(re.compile(r"/trade\?symbol=KO&side=sell$"))
    expect(page.get_by_test_id("side-sell")).to_have_attribute("aria-pressed", "true")


# ---- races a slow network shows ---------------------------------------------------------------


def test_two_symbols_added_quickly_to_a_watchlist_are_both_kept(
    page: Page, system: System, account: Account
) -> None:
    api(system, account, "POST", "/api/v1/watchlists", {"name": "Tech", "symbols": ["AAPL"]})
    sign_in(page, account, at="/watchlists")
    expect(page.get_by_test_id("watchlist-row")).to_have_count(1)
    held = hold(page, "**/api/v1/watchlists/*", "PUT")
    add = page.get_by_test_id("watchlist-add-input")
    add.fill("MSFT")
    page.get_by_test_id("watchlist-add").click()
    wait_for(page, held, 1)
    add.fill("KO")
    page.get_by_test_id("watchlist-add").click()
    # The second change waits for the first's answer, to be made from the list it returns.
    page.wait_for_timeout(500)
    assert len(held) == 1
    held[0].continue_()
    wait_for(page, held, 2)
    assert json.loads(held[1].request.post_data or "{}")["symbols"] == ["AAPL", "MSFT", "KO"]
    held[1].continue_()
    rows = page.get_by_test_id("watchlist-row")
    expect(rows).to_have_count(3)
    assert [row.get_attribute("data-symbol") for row in rows.all()] == ["AAPL", "MSFT", "KO"]
    (stored,) = api(system, account, "GET", "/api/v1/watchlists")
    assert stored["symbols"] == ["AAPL", "MSFT", "KO"], stored["symbols"]


def test_typing_during_a_save_is_kept(page: Page, system: System, account: Account) -> None:
    api(
        system,
        account,
        "POST",
        "/api/v1/workspace/projects",
        {"name": "notes", "template": "notes"},
    )
    sign_in(page, account, at="/workspace")
    page.get_by_test_id("file-tree-item").filter(has_text="README.md").click()
    editor = page.get_by_test_id("editor")
    expect(editor).to_be_visible()
    editor.fill("first line\n")
    held = hold(page, "**/api/v1/files/**", "PUT")
    page.get_by_test_id("editor-save").click()
    wait_for(page, held, 1)
    editor.press("End")
    editor.press_sequentially("second line\n")
    held[0].continue_()
    expect(page.get_by_test_id("editor-notice")).to_have_text("Saved README.md.")
    # What was typed during the save is still there, and unsaved; the file has what was sent.
    expect(editor).to_have_value("first line\nsecond line\n")
    expect(page.get_by_test_id("editor-dirty")).to_be_visible()
    page.unroute("**/api/v1/files/**")
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-dirty")).to_have_count(0)
    expect(editor).to_have_value("first line\nsecond line\n")


def test_the_conversation_opened_last_is_the_one_shown(
    page: Page, system: System, account: Account
) -> None:
    first = api(system, account, "POST", "/api/v1/chat/message", {"message": "alpha question"})
    second = api(system, account, "POST", "/api/v1/chat/message", {"message": "beta question"})
    sign_in(page, account, at="/assistant")
    sessions = page.get_by_test_id("chat-session")
    expect(sessions).to_have_count(2)
    held = hold(page, f"**/api/v1/chat/sessions/{first['sessionId']}*", "GET")
    page.locator(f'[data-session-id="{first["sessionId"]}"]').click()
    wait_for(page, held, 1)
    page.locator(f'[data-session-id="{second["sessionId"]}"]').click()
    mine = page.locator('[data-testid="chat-message"][data-role="user"]')
    expect(mine).to_contain_text(["beta question"])
    held[0].continue_()
    page.wait_for_timeout(1000)
    # The second conversation is the current one (its title, and where a question goes) ...
    expect(page.locator(f'[data-session-id="{second["sessionId"]}"]')).to_have_attribute(
        "aria-current", "true"
    )
    # ... so its messages are the ones shown, not the first's, answered late.
    expect(mine).to_have_text([re.compile("beta question")])


# ---- a retry and a bad field ------------------------------------------------------------------


def test_an_import_retried_after_a_lost_answer_imports_once(
    page: Page, system: System, account: Account
) -> None:
    """The import sends an Idempotency-Key: retried with the same CSV after its answer was lost
    (the API imported it), it is answered from the first, not imported again."""
    tracking = portfolio(system, account, name="Tracking", kind="tracking")
    sign_in(page, account, at=f"/portfolios/{tracking['id']}")
    keys: list[str | None] = []

    def lose_the_first_answer(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the API imports it ...
            route.abort()  # ... and the page never hears so
        else:
            route.continue_()

    page.route("**/api/v1/trades:import", lose_the_first_answer)
    page.get_by_test_id("import-csv").fill(
        "date,side,symbol,quantity,price,fees,notes\n2024-03-15,buy,MSFT,2,410.5,0,first buy\n"
    )
    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-error")).to_be_visible()
    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-result")).to_have_text("1 trades imported.")
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    # Done: the CSV is cleared, so it is not sent again by mistake.
    expect(page.get_by_test_id("import-csv")).to_have_value("")
    expect(page.get_by_test_id("import-submit")).to_be_disabled()
    trades = api(system, account, "GET", f"/api/v1/trades?portfolioId={tracking['id']}")
    assert [(t["side"], t["symbol"], t["quantity"]) for t in trades] == [("buy", "MSFT", "2")]


def test_a_cool_down_that_is_not_a_number_is_refused_on_its_field(
    page: Page, system: System, account: Account
) -> None:
    """It was sent as 0: an alert repeating on every tick."""
    sign_in(page, account, at="/alerts")
    page.locator("#alert-symbol").fill("AAPL")
    page.locator("#alert-threshold").fill("1000")
    page.locator("#alert-repeat").check()
    page.locator("#alert-cooldown").fill("5 min")
    page.get_by_test_id("alert-create").click()
    expect(page.get_by_test_id("alert-cooldown-error")).to_have_text(
        "a whole number of seconds, such as 300"
    )
    expect(page.locator("#alert-cooldown")).to_have_attribute("aria-invalid", "true")
    page.wait_for_timeout(300)
    assert api(system, account, "GET", "/api/v1/alerts") == []
    page.locator("#alert-cooldown").fill("600")
    page.get_by_test_id("alert-create").click()
    expect(page.get_by_test_id("alert-row")).to_have_count(1)
    (alert,) = api(system, account, "GET", "/api/v1/alerts")
    assert (alert["repeat"], alert["cooldownSeconds"]) == (True, 600)
