"""The API explorer: Swagger UI, bundled and under the web process's CSP, calls the API as the
signed-in user; the WebSocket protocols stand beside it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in
from tests.system_harness import Account

pytestmark = pytest.mark.browser


def test_try_it_out_calls_the_api_with_the_signed_in_users_token(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/explorer")
    page.locator(".opblock-tag", has_text="users").first.click()
    operation = page.locator("#operations-users-UsersService_GetMe")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()

    answer = operation.locator(".live-responses-table tbody")
    expect(answer.locator(".response-col_status").first).to_contain_text("200")
    expect(answer.locator(".microlight").first).to_contain_text(account.email)


def test_the_websocket_protocols_are_shown_from_the_readme(page: Page, account: Account) -> None:
    sign_in(page, account, at="/explorer")
    page.get_by_test_id("explorer-tab-ws").click()
    expect(page).to_have_url(re.compile(r"/explorer\?tab=ws$"))
    page.reload()  # the tab is in the URL

    protocols = page.get_by_test_id("explorer-ws")
    for path in ("/ws/portfolio", "/ws/terminal", "/ws/chat"):
        expect(protocols.get_by_role("heading", name=path)).to_be_visible()
    expect(protocols).to_contain_text(
        '{"type": "join", "sessionId": "session_...", "noReplay": false}'
    )
    expect(protocols).to_contain_text("stream_chat")
