"""What a person does on the app's screens, once for every test: sign in, watch the page renew
its session, read a money figure back as a number; and `api`, for what a test sets up before."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from playwright.sync_api import Page, Response, expect

from tests.system_harness import Account, System, request

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
