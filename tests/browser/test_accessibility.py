"""Every screen at 360 px and at a desktop's width: nothing wider than the window (tables scroll
inside their own box), every visible control with an accessible name, and the sign-in form
usable from the keyboard alone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import SIGNED_IN, sign_in
from tests.system_harness import Account, System, request

pytestmark = pytest.mark.browser

SCREENS = (
    "/",
    "/overview",
    "/trade",
    "/portfolio",
    "/stocks/AAPL",
    "/terminal",
    "/workspace",
    "/assistant",
    "/account",
)
# A control's accessible name, as a screen reader finds it: its label, aria-label(ledby),
# its own text, or a title.
UNNAMED = """() => [...document.querySelectorAll('input, select, textarea, button, [role=tab]')]
  .filter(el => el.offsetParent !== null && el.type !== 'hidden')
  .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || el.textContent.trim() || el.title))
  .map(el => el.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.scrollingElement.scrollWidth - window.innerWidth"


@pytest.mark.parametrize("width", [360, 1280])
def test_every_screen_fits_its_window_and_names_its_controls(
    page: Page, system: System, account: Account, width: int
) -> None:
    created = request(
        "POST",
        f"{system.facade_url}/api/v1/portfolios",
        body={"name": "A rather long portfolio name for a phone", "kind": "paper"},
        token=account.access_token,
    )
    assert created.status == 201, created.body
    portfolio = created.body["data"]["id"]
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, account)
    for path in SCREENS:
        target = f"/portfolios/{portfolio}" if path == "/portfolio" else path
        page.goto(target)
        expect(page.get_by_test_id(SIGNED_IN)).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert page.evaluate(OVERFLOW) <= 0, f"{target} is wider than {width} px"
        assert page.evaluate(UNNAMED) == [], f"{target} has controls without a name"


def test_signing_in_takes_the_keyboard_alone(page: Page, account: Account) -> None:
    page.goto("/sign-in")
    page.get_by_label("Email").focus()
    page.keyboard.type(account.email)
    page.keyboard.press("Tab")
    page.keyboard.type(account.password)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
