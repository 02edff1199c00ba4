"""The account page: a person renames themselves, moves to a new email, changes their password
and deletes their account, each checked afterwards through the API and at the sign-in page."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Dialog, Page, Request, Route, expect

from tests.browser.screens import SIGNED_IN, api, sign_in
from tests.system_harness import Account, System, register, request

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def first_account(system: System) -> Account:
    """An account registered before this module's own: in development the system's first one is
    an admin, and the last admin cannot delete itself, so none of these may be it."""
    return register(system)[1]


def logs_in(system: System, email: str, password: str) -> bool:
    answer = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/login",
        body={"email": email, "password": password},
    )
    assert answer.status in (200, 401), answer.body
    return answer.status == 200


def sign_in_by_hand(page: Page, email: str, password: str) -> None:
    """Fills the sign-in form the page is on and sends it."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("signin-submit").click()


def test_the_name_in_the_header_leads_here_and_a_new_one_shows_there_at_once(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account)
    page.get_by_test_id(SIGNED_IN).click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.get_by_test_id("account-name")).to_have_value(account.name)

    # Held until the test lets it through: meanwhile the form cannot be sent again.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(f"**/api/v1/users/{account.user_id}", hold)
    page.get_by_test_id("account-name").fill("  Ada   Lovelace ")
    page.get_by_test_id("account-name-save").click()
    expect(page.get_by_test_id("account-name-save")).to_be_disabled()
    page.get_by_test_id("account-name").press("Enter")
    assert len(held) == 1
    held[0].continue_()

    expect(page.get_by_test_id("account-name-notice")).to_have_text("Your name is saved.")
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text("Ada Lovelace")
    expect(page.get_by_test_id("account-name")).to_have_value("Ada Lovelace")
    expect(page.get_by_test_id("account-name-save")).to_be_enabled()
    assert len(held) == 1, "a second submit reached the API"
    assert api(system, account, "GET", "/api/v1/users/me")["name"] == "Ada Lovelace"


def test_a_new_email_given_with_the_password_is_the_one_to_sign_in_with(
    page: Page, system: System, account: Account
) -> None:
    new_email = f"moved-{uuid.uuid4().hex[:12]}@example.test"
    sign_in(page, account, at="/account")
    page.get_by_test_id("account-email").fill(new_email)
    page.get_by_test_id("account-email-password").fill(account.password)
    page.get_by_test_id("account-email-save").click()

    expect(page.get_by_test_id("account-email-notice")).to_have_text(
        f"Your email is now {new_email}. Sign in with it from now on."
    )
    expect(page.get_by_test_id("account-current-email")).to_have_text(new_email)
    # Sent, so no longer in the form.
    expect(page.get_by_test_id("account-email-password")).to_have_value("")

    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Faccount$"))
    sign_in_by_hand(page, new_email, account.password)
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
    expect(page.get_by_test_id("account-current-email")).to_have_text(new_email)
    assert not logs_in(system, account.email, account.password)


def test_a_wrong_current_password_shows_the_apis_message_keeps_what_was_typed_and_changes_nothing(
    page: Page, system: System, account: Account
) -> None:
    new_email = f"never-{uuid.uuid4().hex[:12]}@example.test"
    wrong = account.password + "-wrong"
    sign_in(page, account, at="/account")

    page.get_by_test_id("account-email").fill(new_email)
    page.get_by_test_id("account-email-password").fill(wrong)
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        page.get_by_test_id("account-email-save").click()
    refusal = answer.value.json()
    assert (answer.value.status, refusal["error"]) == (401, "INVALID_CREDENTIALS")
    expect(page.get_by_test_id("account-email-password-error")).to_have_text(refusal["message"])
    expect(page.get_by_test_id("account-email")).to_have_value(new_email)
    expect(page.get_by_test_id("account-email-password")).to_have_value(wrong)
    expect(page.get_by_test_id("account-email-save")).to_be_enabled()

    page.get_by_test_id("account-new-password").fill("Brand-new-pass-42")
    page.get_by_test_id("account-repeat-password").fill("Brand-new-pass-42")
    page.get_by_test_id("account-password-current").fill(wrong)
    with page.expect_response(lambda r: r.request.method == "PUT") as answer:
        page.get_by_test_id("account-password-save").click()
    expect(page.get_by_test_id("account-password-current-error")).to_have_text(
        answer.value.json()["message"]
    )
    expect(page.get_by_test_id("account-new-password")).to_have_value("Brand-new-pass-42")
    expect(page.get_by_test_id("account-password-notice")).to_have_count(0)

    me = api(system, account, "GET", f"/api/v1/users/{account.user_id}")
    assert me["email"] == account.email
    assert logs_in(system, account.email, account.password)
    assert not logs_in(system, account.email, "Brand-new-pass-42")


def test_without_the_current_password_the_api_names_it_on_its_field(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/account")
    page.get_by_test_id("account-delete-password").fill("")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(lambda r: r.request.method == "DELETE") as answer:
        page.get_by_test_id("account-delete").click()
    refusal = answer.value.json()
    assert (answer.value.status, refusal["error"]) == (422, "VALIDATION_ERROR")
    (named,) = [f for f in refusal["details"]["fields"] if f["field"] == "currentPassword"]
    expect(page.get_by_test_id("account-delete-password-error")).to_have_text(named["description"])
    expect(page.get_by_test_id("account-delete-failed")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/account$"))


def test_a_new_password_ends_the_other_sessions_keeps_this_one_and_replaces_the_old(
    page: Page, system: System, account: Account
) -> None:
    new_password = "Another-pass-" + uuid.uuid4().hex[:8] + "7"
    sign_in(page, account, at="/account")
    expect(page.get_by_test_id("account-password-sessions")).to_contain_text(
        "signs you out everywhere else"
    )

    # Two passwords that differ are not sent.
    page.get_by_test_id("account-new-password").fill(new_password)
    page.get_by_test_id("account-repeat-password").fill(new_password + "x")
    page.get_by_test_id("account-password-current").fill(account.password)
    page.get_by_test_id("account-password-save").click()
    expect(page.get_by_test_id("account-repeat-password-error")).to_have_text(
        "does not match the new password"
    )
    assert logs_in(system, account.email, account.password)

    page.get_by_test_id("account-repeat-password").fill(new_password)
    page.get_by_test_id("account-password-save").click()
    expect(page.get_by_test_id("account-password-notice")).to_have_text(
        "Your password is changed. Your other sessions were signed out; this one stays signed in."
    )
    expect(page.get_by_test_id("account-new-password")).to_have_value("")

    # Registering opened a session elsewhere: it is over. This tab's goes on, a reload (a renewal
    # with its refresh token) included.
    elsewhere = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/refresh",
        body={"refreshToken": account.refresh_token},
    )
    assert (elsewhere.status, elsewhere.body["error"]) == (401, "SESSION_REVOKED")
    page.reload()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")

    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    sign_in_by_hand(page, account.email, account.password)
    expect(page.get_by_test_id("signin-error")).to_be_visible()
    expect(page.get_by_test_id(SIGNED_IN)).to_have_count(0)
    sign_in_by_hand(page, account.email, new_password)
    expect(page.get_by_test_id(SIGNED_IN)).to_have_text(account.name)
    assert not logs_in(system, account.email, account.password)


def test_deleting_the_account_asks_first_then_signs_out_and_no_one_can_sign_in(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account, at="/account")
    page.get_by_test_id("account-delete-password").fill(account.password)

    deletions: list[Request] = []
    page.on("request", lambda r: deletions.append(r) if r.method == "DELETE" else None)
    asked: list[str] = []

    def decline(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    page.get_by_test_id("account-delete").click()
    expect(page.get_by_test_id("account-delete")).to_be_enabled()
    assert asked and asked[0].startswith("Delete your account?"), asked
    assert deletions == []
    assert api(system, account, "GET", "/api/v1/users/me")["email"] == account.email

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("account-delete").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    expect(page.get_by_test_id("signin-notice")).to_have_text("Your account was deleted.")
    expect(page.get_by_test_id(SIGNED_IN)).to_have_count(0)

    sign_in_by_hand(page, account.email, account.password)
    expect(page.get_by_test_id("signin-error")).to_be_visible()
    assert not logs_in(system, account.email, account.password)
