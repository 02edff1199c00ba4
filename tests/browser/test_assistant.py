"""The assistant in the browser: a question answered over /ws/chat (the offline provider, as
`make run` starts it without a key), kept in the user's conversations and found by search."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import open_assistant, sign_in
from tests.system_harness import Account

pytestmark = pytest.mark.browser


def test_a_question_is_answered_on_screen_and_kept_as_a_conversation(
    page: Page, account: Account
) -> None:
    open_assistant(page, account)
    expect(page.get_by_test_id("chat-model")).not_to_have_value("")

    page.get_by_label("Your question").fill("what is my portfolio worth?")
    page.get_by_test_id("chat-send").click()

    answer = page.get_by_test_id("chat-answer").last
    # The offline provider says so, then answers from the user's (empty) portfolios.
    expect(answer).to_contain_text("offline")
    expect(answer).to_contain_text("You have no portfolios yet.")
    expect(page.get_by_test_id("chat-tool")).to_contain_text("list_portfolios")
    expect(page.get_by_test_id("chat-send")).to_be_visible()  # no answer streaming any more
    expect(page.get_by_test_id("chat-session")).to_have_text(["what is my portfolio worth?"])

    page.get_by_label("Search messages").fill("portfolio worth")
    page.get_by_label("Search messages").press("Enter")
    expect(page.get_by_test_id("chat-search-result").first).to_contain_text(
        "what is my portfolio worth?"
    )


def test_a_conversation_moved_into_a_new_folder_is_listed_under_it(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/assistant")
    page.get_by_label("Your question").fill("what do I hold?")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-answer").last).to_contain_text("offline")

    page.get_by_label("New folder").fill("Research")
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Folder", exact=True).select_option(label="Research")

    folder = page.get_by_test_id("chat-folder").filter(has_text="Research")
    expect(folder.get_by_test_id("chat-session")).to_have_text(["what do I hold?"])

    # The folder and its name come from the API: nothing of this browser's storage is needed.
    page.evaluate("localStorage.clear()")
    page.reload()
    expect(folder.get_by_role("heading")).to_have_text("Research")
    expect(folder.get_by_test_id("chat-session")).to_have_text(["what do I hold?"])
