"""What a person does on the app's screens, once for every test: sign up, sign in, read a money
figure back as a number."""

from __future__ import annotations

import re
from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.system_harness import Account

SIGNED_IN = "user-email"
# Intl.NumberFormat may write negatives with U+2212.
MINUS_SIGN = "\N{MINUS SIGN}"


def sign_in(page: Page, account: Account, *, at: str = "/") -> None:
    """Opens `at` signed out (the app sends us to sign in), signs in, and lands back on `at`."""
    page.goto(at)
    expect(page).to_have_url(re.compile(r"/sign-in(\?|$)"))
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)


def amount(text: str) -> Decimal:
    """`$10,000.00` or `-$1,234.50` as a Decimal (the currency sign and grouping dropped)."""
    cleaned = re.sub(r"[^0-9.+-]", "", text.replace(MINUS_SIGN, "-"))
    return Decimal(cleaned)
