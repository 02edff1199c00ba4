"""Signing up, in and out in a real browser; a reload keeps the session; a session ended
elsewhere lands on sign-in with the reason."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import SIGNED_IN, renewals, sign_in
from tests.system_harness import Account, System, new_credentials, request

pytestmark = pytest.mark.browser


def test_signing_up_lands_on_an_empty_dashboard_named_for_the_user(
    page: Page, system: System
) -> None:
    email, password, name = new_credentials()
    page.goto("/sign-up")
    page.get_by_label("Name (optional)").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("signup-submit").click()

    expect(page).to_have_url(f"{system.web_url}/")
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(name)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    # The account exists in the API with what was typed.
    login = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/login",
        body={"email": email, "password": password},
    )
    assert login.status == 200, login.body
    assert login.body["data"]["user"]["name"] == name


def test_a_taken_email_is_shown_on_the_email_field_with_the_apis_message(
    page: Page, account: Account
) -> None:
    page.goto("/sign-up")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_test_id("signup-submit").click()
    error = page.get_by_test_id("signup-email-error")
    expect(error).to_be_visible()
    assert "[object Object]" not in error.inner_text()
    assert "already" in error.inner_text().lower() or "taken" in error.inner_text().lower()
    expect(page).to_have_url(re.compile(r"/sign-up$"))


def test_a_page_asked_for_signed_out_comes_back_after_signing_in(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/trade")
    expect(page).to_have_url(re.compile(r"/trade$"))


def test_other_names_of_the_sign_in_and_sign_up_pages_lead_to_them_then_home(
    page: Page, account: Account
) -> None:
    # /login used to come back after signing in as a "Page not found".
    sign_in(page, account, at="/login")
    expect(page).to_have_url(re.compile(r"/$"))
    page.goto("/register")
    expect(page).to_have_url(re.compile(r"/$"))


def test_a_next_page_that_names_another_site_is_not_followed(page: Page, account: Account) -> None:
    sign_in(page, account, at="/sign-in?next=//example.com/steal")
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/$"))


def test_a_wrong_password_shows_the_apis_own_message(
    page: Page, system: System, account: Account
) -> None:
    page.goto("/sign-in")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password + "-wrong")
    page.get_by_test_id("signin-submit").click()
    expected = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/login",
        body={"email": account.email, "password": account.password + "-wrong"},
    ).body["message"]
    expect(page.get_by_test_id("signin-error")).to_have_text(expected)
    expect(page).to_have_url(re.compile(r"/sign-in$"))


def test_signing_out_forgets_the_session_even_across_a_reload(
    page: Page, system: System, account: Account
) -> None:
    tokens = sign_in(page, account)
    renewed = renewals(page)

    page.get_by_test_id("sign-out").click()

    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2F$"))
    expect(page.get_by_test_id("signin-notice")).to_have_text("You are signed out.")
    page.reload()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_count(0)
    assert [r["given"] for r in renewed] == [None] * len(renewed), renewed
    # The API ended the session too: its refresh token renews nothing.
    renewal = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/refresh",
        body={"refreshToken": tokens["refreshToken"]},
    )
    assert renewal.status == 401, renewal.body


def test_a_reload_signs_in_again_from_the_rotated_refresh_token(
    page: Page, account: Account
) -> None:
    tokens = sign_in(page, account)
    renewed = renewals(page)

    page.reload()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    page.reload()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
    # The name may show before the renewal's answer has been seen here (a loaded machine).
    for _ in range(100):
        if len(renewed) >= 2:
            break
        page.wait_for_timeout(50)

    # Each reload renewed once, with the token the previous answer gave: rotated every time.
    assert [r["status"] for r in renewed] == [200, 200], renewed
    assert renewed[0]["sent"] == tokens["refreshToken"]
    assert renewed[1]["sent"] == renewed[0]["given"] != tokens["refreshToken"]


def test_a_session_ended_elsewhere_lands_on_sign_in_with_the_reason(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account)
    expect(page.get_by_test_id("feed-status")).to_have_attribute("aria-label", "Live prices: open")

    # Somewhere else, the same person signs out of every session.
    elsewhere = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/login",
        body={"email": account.email, "password": account.password},
    ).body["data"]["tokens"]["accessToken"]
    logout = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/logout",
        body={"allSessions": True},
        token=elsewhere,
    )
    assert logout.status == 200, logout.body

    # No click here: the open socket is closed by the facade and the app follows.
    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2F$"))
    expect(page.get_by_test_id("signin-notice")).to_contain_text("session has ended")
    expect(page.get_by_test_id(SIGNED_IN)).to_have_count(0)
