"""The overview of all portfolios in a real browser: reached from the navigation, its totals,
one row per portfolio with its own value and the value converted at the rate it names, the
holdings with the cash in the allocation; the currency picked is the page's address, and a
user without portfolios sees zeros and an invitation, not an error."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import amount, api, sign_in
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser

D = Decimal


def cent(value: Decimal) -> Decimal:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)


def test_the_overview_adds_up_portfolios_in_two_currencies(
    page: Page, system: System, account: Account
) -> None:
    dollars = api(
        system,
        account,
        "POST",
        "/api/v1/portfolios",
        {"name": "Dollars", "kind": "paper", "initialCash": "10000"},
    )["id"]
    buy = {"portfolioId": dollars, "side": "buy", "symbol": "AAPL", "quantity": "3", "price": "190"}
    api(system, account, "POST", "/api/v1/trades", buy)
    euros = api(
        system, account, "POST", "/api/v1/portfolios", {"name": "Euros", "currency": "EUR"}
    )["id"]
    deposit = {"portfolioId": euros, "side": "deposit", "quantity": "2500.505"}
    api(system, account, "POST", "/api/v1/trades", deposit)
    eur_usd = api(system, account, "GET", "/api/v1/fx?from=EUR&to=USD")["rate"]

    sign_in(page, account)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_test_id("overview-currency")).to_have_value("USD")
    overview = page.get_by_test_id("overview")
    expect(overview).to_have_attribute("data-currency", "USD")

    # The euro portfolio: 2,500.505 shown as 2,500.50, converted at the rate the page names.
    in_dollars = cent(D("2500.50") * D(eur_usd))
    euro_row = page.get_by_test_id(f"overview-portfolio-{euros}")
    expect(euro_row).to_contain_text("Euros")
    expect(euro_row).to_contain_text("€2,500.50")
    expect(euro_row).to_contain_text(eur_usd)
    assert amount(euro_row.get_by_test_id("overview-portfolio-value").inner_text()) == in_dollars
    expect(page.get_by_test_id("overview-rates")).to_contain_text(f"1 EUR = {eur_usd} USD")
    # The cash and the money put in do not move with the market.
    expect(page.get_by_test_id("overview-cash")).to_have_attribute(
        "data-value", str(D("9430.00") + in_dollars)
    )
    expect(page.get_by_test_id("overview-cost")).to_have_attribute(
        "data-value", str(D("10000.00") + in_dollars)
    )
    # The rows add up to the total, and the gain is the total less the money put in.
    dollar_row = page.get_by_test_id(f"overview-portfolio-{dollars}")
    total = D(page.get_by_test_id("overview-total-value").get_attribute("data-value") or "")
    shown = amount(dollar_row.get_by_test_id("overview-portfolio-value").inner_text())
    assert total == shown + in_dollars
    gain = D(page.get_by_test_id("overview-gain").get_attribute("data-value") or "")
    assert gain == total - D("10000.00") - in_dollars
    aapl = page.get_by_test_id("overview-holding-AAPL")
    expect(aapl).to_contain_text("AAPL")
    expect(aapl.locator("td").nth(1)).to_have_text("3")  # shares
    expect(page.get_by_test_id("allocation")).to_contain_text("cash")

    # Another currency is another address; the dollar portfolio is the converted one now.
    page.get_by_test_id("overview-currency").select_option("EUR")
    expect(page).to_have_url(re.compile(r"/overview\?currency=EUR$"))
    expect(overview).to_have_attribute("data-currency", "EUR")
    expect(page.get_by_test_id("overview-rates")).to_contain_text("1 USD = ")
    expect(euro_row.get_by_test_id("overview-portfolio-value")).to_have_text("€2,500.50")
    page.reload()
    expect(page.get_by_test_id("overview-currency")).to_have_value("EUR")
    expect(euro_row.get_by_test_id("overview-portfolio-value")).to_have_text("€2,500.50")


def test_yen_are_shown_to_the_cent_as_the_api_states_them_so_the_rows_add_up(
    page: Page, system: System, account: Account
) -> None:
    """The API keeps money to the cent in every currency: two yen portfolios of ¥0.50 each are
    ¥1.00 together, not two rows of ¥1 (Intl's whole yen) over a total of ¥1."""
    for name in ("Tokyo", "Osaka"):
        made = api(system, account, "POST", "/api/v1/portfolios", {"name": name, "currency": "JPY"})
        deposit = {"portfolioId": made["id"], "side": "deposit", "quantity": "0.5"}
        api(system, account, "POST", "/api/v1/trades", deposit)

    sign_in(page, account, at="/overview?currency=JPY")
    values = page.get_by_test_id("overview-portfolio-value")
    expect(values).to_have_text(["¥0.50", "¥0.50"])
    total = page.get_by_test_id("overview-total-value")
    expect(total).to_have_text("¥1.00")
    assert sum(amount(v) for v in values.all_inner_texts()) == amount(total.inner_text())


def test_without_portfolios_the_overview_is_zeros_and_an_invitation(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/overview?currency=GBP")
    expect(page.get_by_test_id("overview-empty")).to_contain_text("No portfolios yet")
    expect(page.get_by_test_id("overview-total-value")).to_have_text("£0.00")
    expect(page.get_by_test_id("overview-rates")).to_contain_text("Nothing converted")
    expect(page.get_by_test_id("overview-error")).to_have_count(0)
