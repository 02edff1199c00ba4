"""The admin page: service health, and every account with its roles. This module's own system
makes its first account the admin (as development does), so the roles are known."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.private_system import private_system
from tests.browser.screens import sign_in
from tests.system_harness import Account, System, register, request

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def system(bundle: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with private_system(tmp_path_factory.mktemp("browser-admin")) as started:
        yield started


@pytest.fixture(scope="module")
def admin(system: System) -> Account:
    """The system's first account: an admin."""
    return register(system)[1]


def roles_of(system: System, admin: Account, user: Account) -> list[str]:
    answer = request(
        "GET", f"{system.facade_url}/api/v1/users/{user.user_id}", token=admin.access_token
    )
    assert answer.status == 200, answer.body
    return list(answer.body["data"]["roles"])


def test_an_admin_sees_every_service_serving_and_makes_another_user_an_admin(
    page: Page, system: System, admin: Account, account: Account
) -> None:
    sign_in(page, admin, at="/admin")
    services = page.get_by_test_id("health-service")
    expect(services).to_have_count(5)
    for service in services.all():
        expect(service).to_contain_text("Serving")

    page.get_by_label("Search by email or name").fill(account.email)
    page.get_by_label("Search by email or name").press("Enter")
    expect(page.get_by_test_id("admin-user")).to_have_count(1)
    page.get_by_label(f"Admin: {account.email}").check()

    expect(page.get_by_test_id("admin-notice")).to_have_text(
        f"{account.email} is now an admin; their sessions were ended."
    )
    assert roles_of(system, admin, account) == ["user", "admin"]


def test_the_last_admin_stepping_down_is_refused_with_the_apis_message(
    page: Page, system: System, admin: Account
) -> None:
    for other in request(
        "GET", f"{system.facade_url}/api/v1/users?limit=100", token=admin.access_token
    ).body["data"]:
        if other["id"] != admin.user_id and "admin" in other["roles"]:
            request(
                "PUT",
                f"{system.facade_url}/api/v1/users/{other['id']}",
                body={"roles": ["user"]},
                token=admin.access_token,
            )
    sign_in(page, admin, at="/admin")
    page.get_by_label("Search by email or name").fill(admin.email)
    page.get_by_label("Search by email or name").press("Enter")
    page.once("dialog", lambda dialog: dialog.accept())  # "Remove your own admin role?"
    # A click, not uncheck(): the refusal may put the box back before uncheck() could look.
    page.get_by_label(f"Admin: {admin.email}").click()

    expect(page.get_by_label(f"Admin: {admin.email}")).to_be_checked()
    expect(page.get_by_test_id("admin-error")).to_have_text(
        "the last admin cannot give up the admin role or be deleted"
    )


def test_a_user_who_is_not_an_admin_is_told_the_page_is_not_for_them(
    page: Page, admin: Account, account: Account
) -> None:
    sign_in(page, account, at="/admin")
    expect(page.get_by_test_id("admin-refused")).to_have_text(
        "This page is for administrators only."
    )
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
