"""What a person does on the app's screens, once for every test: sign in, watch the page renew
its session, read a money figure back as a number; and `api`, for what a test sets up before."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from playwright.sync_api import Locator, Page, Response, expect

from tests.system_harness import Account, System, request
from tests.utc_days import utc_today

# This machine has no network beyond the package registries: without these, Chromium keeps
# trying to reach Google's hosts (the browser tests and bench.web both launch it so).
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-gpu",
]
SIGNED_IN = "user-email"
# Intl.NumberFormat may write negatives with U+2212.
MINUS_SIGN = "\N{MINUS SIGN}"


def api(system: System, account: Account, method: str, path: str, body: Any = None) -> Any:
    """One call of the REST API as `account`, which must succeed; its envelope's `data`."""
    answer = request(method, f"{system.facade_url}{path}", body=body, token=account.access_token)
    assert answer.status < 300, answer.body
    return answer.body["data"]


def tracking_portfolio(system: System, account: Account, name: str) -> str:
    """A new tracking portfolio of `account`'s; its id."""
    body = {"name": name, "kind": "tracking"}
    return str(api(system, account, "POST", "/api/v1/portfolios", body)["id"])


def recorded_trade(
    system: System,
    account: Account,
    portfolio: str,
    side: str,
    symbol: str,
    quantity: str,
    price: str,
    day: str,
    *,
    fees: str | None = None,
) -> dict[str, Any]:
    """`side` of `quantity` `symbol` at `price` recorded in `portfolio` at 15:00 UTC on `day`
    (an ISO date), with `fees` where given; the trade the API answered."""
    body = {
        "portfolioId": portfolio,
        "side": side,
        "symbol": symbol,
        "quantity": quantity,
        "price": price,
        "executedAt": f"{day}T15:00:00Z",
    }
    if fees is not None:
        body["fees"] = fees
    trade: dict[str, Any] = api(system, account, "POST", "/api/v1/trades", body)
    return trade


def tracking_portfolio_with_trades(
    system: System,
    account: Account,
    name: str,
    symbol: str,
    trades: tuple[tuple[str, str, str, str, str], ...],
) -> str:
    """A tracking portfolio with each `(side, quantity, price, fees, day)` of `symbol` recorded
    at 15:00 UTC on the day; its id."""
    portfolio = tracking_portfolio(system, account, name)
    for side, quantity, price, fees, day in trades:
        recorded_trade(system, account, portfolio, side, symbol, quantity, price, day, fees=fees)
    return portfolio


def days_ago(days: int) -> str:
    """The UTC day `days` before today, as an ISO date."""
    return (utc_today() - timedelta(days=days)).isoformat()


@dataclass(frozen=True)
class Typos:
    """A tracking portfolio of AAPL with a typo: a buy of 10 six days ago, a buy of 100 (10
    meant) five days ago, a sell of 4 two days ago; the trades as the API answered them."""

    portfolio: str
    first: dict[str, Any]
    typo: dict[str, Any]
    sold: dict[str, Any]

    SYMBOL: ClassVar[str] = "AAPL"


def opened_with_a_typo(page: Page, system: System, account: Account) -> Typos:
    """`Typos` made, and its page opened signed in, showing the 106 shares and $11,000.00 the
    typo makes."""
    portfolio = tracking_portfolio(system, account, "Typos")

    def trade(side: str, quantity: str, days: int) -> dict[str, Any]:
        return recorded_trade(
            system, account, portfolio, side, Typos.SYMBOL, quantity, "100", days_ago(days)
        )

    typos = Typos(portfolio, trade("buy", "10", 6), trade("buy", "100", 5), trade("sell", "4", 2))
    sign_in(page, account, at=f"/portfolios/{portfolio}")
    expect(page.get_by_test_id(f"quantity-{Typos.SYMBOL}")).to_have_text("106")
    expect(page.get_by_test_id("portfolio-cost")).to_have_text("$11,000.00")
    return typos


def trade_row(page: Page, trade_id: str) -> Locator:
    """The Trades table's row of the trade."""
    return page.locator(f'[data-testid="trade-row"][data-trade-id="{trade_id}"]')


def tracking_portfolio_with_buys(
    system: System, account: Account, name: str, cash: str, buys: tuple[tuple[str, str, str], ...]
) -> str:
    """A tracking portfolio of `account`'s given `cash`, then each `(symbol, quantity, price)`
    bought; its id."""
    body = {"name": name, "kind": "tracking", "initialCash": cash}
    portfolio = str(api(system, account, "POST", "/api/v1/portfolios", body)["id"])
    for symbol, quantity, price in buys:
        trade = {
            "portfolioId": portfolio,
            "side": "buy",
            "symbol": symbol,
            "quantity": quantity,
            "price": price,
        }
        api(system, account, "POST", "/api/v1/trades", trade)
    return portfolio


def sign_in(page: Page, account: Account, *, at: str = "/") -> dict[str, Any]:
    """Opens `at` signed out (the app sends us to sign in), signs in, and lands back on `at`.
    Returns the tokens the API gave the page."""
    page.goto(at)
    expect(page).to_have_url(re.compile(r"/sign-in(\?|$)"))
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/login")) as login:
        page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
    return dict(login.value.json()["data"]["tokens"])


def open_assistant(page: Page, account: Account) -> None:
    """Signs in on the assistant page and waits until its /ws/chat socket is open."""
    sign_in(page, account, at="/assistant")
    expect(page.get_by_test_id("chat-status")).to_have_attribute(
        "aria-label", "Assistant connection: open"
    )


def renewals(page: Page) -> list[dict[str, Any]]:
    """Every POST /api/v1/auth/refresh the page sends from now on: the token it sent (`sent`)
    and the token it was given (`given`, None when refused), in order."""
    seen: list[dict[str, Any]] = []

    def on_response(response: Response) -> None:
        if response.url.endswith("/api/v1/auth/refresh") and response.request.method == "POST":
            sent = json.loads(response.request.post_data or "{}").get("refreshToken")
            given = response.json()["data"]["tokens"]["refreshToken"] if response.ok else None
            seen.append({"sent": sent, "given": given, "status": response.status})

    page.on("response", on_response)
    return seen


def amount(text: str) -> Decimal:
    """`$10,000.00` or `-$1,234.50` as a Decimal (the currency sign and grouping dropped)."""
    cleaned = re.sub(r"[^0-9.+-]", "", text.replace(MINUS_SIGN, "-"))
    return Decimal(cleaned)


def percent_shown(ratio: str, *, signed: bool = True) -> str:
    """A ratio from the API ("0.196250" is 19.625 %) as the app writes it ("+19.63 %", or
    "19.63 %" unsigned): JavaScript's `(Number(ratio) * 100).toFixed(2)`, which rounds the
    double's exact value half away from zero, where Python's `format(..., ".2f")` rounds it half
    to even ("19.62"). A return, an alpha or a change moves with the day and the ticks, so some
    runs meet a tie."""
    percent = float(ratio) * 100
    return f"{'+' if signed and percent > 0 else ''}{fixed_shown(percent)} %"


def fixed_shown(value: str | float, places: int = 2) -> str:
    """`Number(value).toFixed(places)` as the app writes a plain figure (a Sharpe ratio)."""
    step = Decimal(1).scaleb(-places)
    return str(Decimal(float(value)).quantize(step, rounding=ROUND_HALF_UP))
