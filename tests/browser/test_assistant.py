"""The assistant in the browser: a question answered over /ws/chat (the offline provider, as
`make run` starts it without a key), kept in the user's conversations and found by search."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import api, open_assistant, sign_in
from tests.system_harness import Account, System

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


def test_a_long_conversation_shows_its_newest_messages_and_pages_back(
    page: Page, system: System, account: Account
) -> None:
    """The service gives a conversation's newest 100 messages; the page shows them and reads
    the earlier ones when asked, above what it shows."""
    questions = [f"note {n}" for n in range(1, 56)]
    session = ""
    for question in questions:
        body = {"message": question, **({"sessionId": session} if session else {})}
        session = api(system, account, "POST", "/api/v1/chat/message", body)["sessionId"]
    stored = api(system, account, "GET", f"/api/v1/chat/sessions/{session}?limit=500")
    assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == questions

    open_assistant(page, account)
    page.get_by_test_id("chat-session").first.click()
    mine = page.locator('[data-testid="chat-message"][data-role="user"]')
    expect(mine.last).to_contain_text("note 55")
    shown = mine.all_inner_texts()
    assert 0 < len(shown) < len(questions)  # only the newest 100 messages
    earlier = page.get_by_test_id("chat-earlier")
    expect(earlier).to_be_visible()

    earlier.click()
    expect(earlier).to_have_count(0)  # nothing older remains
    expect(mine).to_have_count(len(questions))
    assert [text.replace("You:", "").strip() for text in mine.all_inner_texts()] == questions
