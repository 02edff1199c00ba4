"""The money screens in a real browser: the dashboard's total follows a new portfolio and a trade,
a live price arrives on screen, a double click places one order, an oversell is shown on the
quantity field, a CSV import names each bad row's problems beside it, and lists the splits of
its split rows, checked and imported."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import amount, api, sign_in
from tests.system_harness import Account, System, request

pytestmark = pytest.mark.browser

SYMBOL = "AAPL"


def paper_portfolio(system: System, account: Account, cash: str = "10000") -> str:
    created = api(
        system,
        account,
        "POST",
        "/api/v1/portfolios",
        {"name": "Paper", "kind": "paper", "initialCash": cash},
    )
    return str(created["id"])


def tracking_portfolio(system: System, account: Account) -> str:
    """A portfolio that records real trades (no cash of its own to check them against)."""
    created = api(
        system, account, "POST", "/api/v1/portfolios", {"name": "Broker", "kind": "tracking"}
    )
    return str(created["id"])


def trades_of(system: System, account: Account, portfolio_id: str) -> list[dict[str, Any]]:
    """Its buys and sells (a paper portfolio's starting cash is a trade of its own)."""
    trades = api(system, account, "GET", f"/api/v1/trades?portfolioId={portfolio_id}")
    return [t for t in trades if t["side"] in {"buy", "sell"}]


def open_signed_in(page: Page, account: Account, path: str) -> None:
    """Signs in, then opens `path` (a reload: the session comes back from the refresh token)."""
    sign_in(page, account)
    page.goto(path)


def near(shown: Decimal, expected: Decimal) -> bool:
    """Within 2 %: the price ticks between the trade and the reading."""
    return abs(shown - expected) <= expected * Decimal("0.02")


def test_a_new_portfolio_and_trades_change_the_dashboard_total(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account)
    total = page.get_by_test_id("dashboard-total")
    expect(page.get_by_test_id("no-portfolios")).to_be_visible()
    expect(total).to_have_text("$0.00")

    page.get_by_label("Name").fill("Long term")
    page.get_by_label("Kind").select_option("tracking")
    page.get_by_test_id("create-portfolio-submit").click()

    expect(page.get_by_test_id("portfolio-link")).to_have_text("Long term")
    (portfolio,) = api(system, account, "GET", "/api/v1/portfolios")
    assert (portfolio["name"], portfolio["kind"]) == ("Long term", "tracking")
    expect(page.get_by_test_id(f"portfolio-total-{portfolio['id']}")).to_have_text("$0.00")

    # A buy on the trade page, the symbol picked from the suggestions.
    page.get_by_role("link", name="Trade", exact=True).click()
    page.get_by_test_id("symbol-input").fill("app")
    page.get_by_test_id(f"suggestion-{SYMBOL}").click()
    expect(page.get_by_test_id("symbol-input")).to_have_value(SYMBOL)
    page.get_by_label("Quantity").fill("10")
    page.get_by_test_id("trade-submit").click()
    expect(page.get_by_test_id("trade-result")).to_contain_text(f"Bought 10 {SYMBOL} at")
    (trade,) = trades_of(system, account, portfolio["id"])
    price = Decimal(trade["price"])

    page.get_by_role("link", name="Dashboard", exact=True).click()
    holdings = page.get_by_test_id(f"portfolio-holdings-{portfolio['id']}")
    expect(holdings).to_have_text(re.compile(r"^1 position · cash \$"))
    expect(total).not_to_have_text("$0.00")
    assert near(amount(total.inner_text()), 10 * price), (total.inner_text(), price)

    # A buy made elsewhere (the API) reaches the open dashboard over /ws/portfolio.
    api(
        system,
        account,
        "POST",
        "/api/v1/trades",
        {"portfolioId": portfolio["id"], "side": "buy", "symbol": SYMBOL, "quantity": "5"},
    )
    card_total = f"[data-testid=portfolio-total-{portfolio['id']}]"
    page.wait_for_function(
        """([selector, low, high]) => {
            const value = Number(document.querySelector(selector)?.dataset.value);
            return value >= low && value <= high;
        }""",
        arg=[card_total, float(15 * price * Decimal("0.98")), float(15 * price * Decimal("1.02"))],
    )
    assert near(amount(total.inner_text()), 15 * price), (total.inner_text(), price)


def test_a_live_price_arrives_on_screen(page: Page, account: Account) -> None:
    open_signed_in(page, account, f"/trade?symbol={SYMBOL}")
    quote = page.get_by_test_id("quote-price")
    expect(quote).to_have_text(re.compile(r"^\d[\d,]*\.\d{2,6}$"))
    seen = {quote.inner_text()}
    # The REST answer came first; every other value is a tick over /ws/portfolio.
    for _ in range(2):
        expect(quote).not_to_have_text(re.compile("^(" + "|".join(map(re.escape, seen)) + ")$"))
        seen.add(quote.inner_text())
    prices = [amount(text) for text in seen]
    assert len(prices) == 3 and all(Decimal(100) < p < Decimal(400) for p in prices), prices


def test_a_double_click_on_buy_places_one_trade(
    page: Page, system: System, account: Account
) -> None:
    portfolio_id = paper_portfolio(system, account)
    open_signed_in(page, account, f"/trade?portfolio={portfolio_id}&symbol={SYMBOL}")
    page.get_by_label("Quantity").fill("3")

    page.get_by_test_id("trade-submit").dblclick()

    result = page.get_by_test_id("trade-result")
    expect(result).to_contain_text(f"Bought 3 {SYMBOL} at")
    (trade,) = trades_of(system, account, portfolio_id)
    assert (trade["side"], trade["symbol"], Decimal(trade["quantity"])) == ("buy", SYMBOL, 3)
    expect(result).to_have_attribute("data-trade-id", trade["id"])
    page.goto(f"/portfolios/{portfolio_id}")
    # The starting cash and the one buy.
    expect(page.get_by_test_id("trade-row")).to_have_count(2)
    expect(page.get_by_test_id(f"quantity-{SYMBOL}")).to_have_text("3")


def test_selling_more_than_held_is_shown_on_the_quantity_field(
    page: Page, system: System, account: Account
) -> None:
    portfolio_id = paper_portfolio(system, account)
    api(
        system,
        account,
        "POST",
        "/api/v1/trades",
        {"portfolioId": portfolio_id, "side": "buy", "symbol": SYMBOL, "quantity": "2"},
    )
    open_signed_in(page, account, f"/trade?portfolio={portfolio_id}&symbol={SYMBOL}&side=sell")
    page.get_by_label("Quantity").fill("5")
    page.get_by_test_id("trade-submit").click()

    refused = request(
        "POST",
        f"{system.facade_url}/api/v1/trades",
        body={"portfolioId": portfolio_id, "side": "sell", "symbol": SYMBOL, "quantity": "5"},
        token=account.access_token,
    )
    assert (refused.status, refused.body["error"]) == (422, "INSUFFICIENT_SHARES")
    expect(page.get_by_test_id("trade-quantity-error")).to_have_text(refused.body["message"])
    expect(page.get_by_label("Quantity")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("trade-error")).to_have_count(0)
    assert len(trades_of(system, account, portfolio_id)) == 1


CSV_WITH_ERRORS = (
    "date,side,symbol,quantity,price,fees,notes\n"
    "2024-03-15,buy,MSFT,2,410.5,0,first buy\n"
    "2024-03-16,buy,MSFT,2,not-a-price,0,\n"
    "2024-03-17,hold,MSFT,1,400,0,\n"
)
CSV_FIXED = CSV_WITH_ERRORS.replace("not-a-price", "405").replace("hold", "sell")


def test_a_csv_import_names_each_bad_rows_problems_beside_it(
    page: Page, system: System, account: Account
) -> None:
    portfolio_id = tracking_portfolio(system, account)
    open_signed_in(page, account, f"/portfolios/{portfolio_id}")
    page.get_by_test_id("import-csv").fill(CSV_WITH_ERRORS)
    page.get_by_test_id("import-check").click()

    checked = request(
        "POST",
        f"{system.facade_url}/api/v1/trades:import",
        body={"portfolioId": portfolio_id, "csv": CSV_WITH_ERRORS, "dryRun": True},
        token=account.access_token,
    )
    assert checked.status == 422, checked.body
    by_row: dict[int, list[str]] = {}
    for violation in checked.body["details"]["fields"]:
        row, _, column = violation["field"].partition(": ")
        by_row.setdefault(int(row.removeprefix("row ")), []).append(
            f"{column}: {violation['description']}"
        )
    assert sorted(by_row) == [2, 3], by_row
    expect(page.get_by_test_id("import-row-1-errors")).to_have_text("")
    for row, problems in by_row.items():
        expect(page.get_by_test_id(f"import-row-{row}-errors").locator("li")).to_have_text(problems)
    expect(page.get_by_test_id("import-row-2")).to_have_class(re.compile(r"\bbad\b"))
    expect(page.get_by_test_id("import-result")).to_have_count(0)
    assert trades_of(system, account, portfolio_id) == []

    page.get_by_test_id("import-csv").fill(CSV_FIXED)
    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-result")).to_have_text("3 trades imported.")
    expect(page.get_by_test_id("trade-row")).to_have_count(3)
    assert len(trades_of(system, account, portfolio_id)) == 3


# A 1-for-3 of 100 MSFT keeps 33.33333333 shares and pays the 0.0000000033... share below 8
# places in cash: 0.01 at 3,000,000 a share.
CSV_WITH_A_SPLIT = (
    "date,side,symbol,quantity,price,fees,notes\n"
    "2024-03-15,buy,MSFT,100,410.5,0,\n"
    "2024-04-01,split,MSFT,1:3,3000000,,\n"
    "2024-04-02,sell,MSFT,30,1200,0,\n"
)


def test_a_csv_imports_split_rows_are_listed_by_the_check_and_the_import(
    page: Page, system: System, account: Account
) -> None:
    portfolio_id = tracking_portfolio(system, account)
    open_signed_in(page, account, f"/portfolios/{portfolio_id}")
    page.get_by_test_id("import-csv").fill(CSV_WITH_A_SPLIT)
    page.get_by_test_id("import-check").click()
    expect(page.get_by_test_id("import-result")).to_have_text(
        "Every row is good: 2 trades and 1 split would be imported."
    )
    listed = page.get_by_test_id("import-splits")
    expect(listed.get_by_role("heading")).to_have_text("Splits that would be recorded")
    row = listed.get_by_test_id("import-split-row")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-symbol", "MSFT")
    expect(row.get_by_test_id("import-split-date")).to_have_text("2024-04-01")
    expect(row.get_by_test_id("import-split-ratio")).to_have_text("1-for-3 reverse")
    expect(row.get_by_test_id("import-split-shares")).to_have_text("100 → 33.33333333")
    expect(row.get_by_test_id("import-split-cash")).to_have_text("$0.01 at 3,000,000.00")
    assert trades_of(system, account, portfolio_id) == []
    assert api(system, account, "GET", f"/api/v1/portfolios/{portfolio_id}/splits") == []

    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-result")).to_have_text("2 trades and 1 split imported.")
    expect(listed.get_by_role("heading")).to_have_text("Splits recorded")
    expect(row.get_by_test_id("import-split-shares")).to_have_text("100 → 33.33333333")
    (recorded,) = api(system, account, "GET", f"/api/v1/portfolios/{portfolio_id}/splits")
    assert (recorded["quantityAfter"], recorded["cashInLieu"]) == ("33.33333333", "0.01")
    # The page's own Splits list shows it too, once the portfolio reloads.
    expect(page.get_by_test_id("split-row").get_by_test_id("split-ratio")).to_have_text(
        "1-for-3 reverse"
    )
