"""An answer that streams for seconds, as a real model's does: its text grows on screen chunk by
chunk, and Stop ends it, keeping what was written. The system here has a provider
(tests/fakes/anthropic.py, a few words a second) instead of the offline one, so this module
starts its own system; the page and account fixtures use it through the `system` override."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.private_system import private_system
from tests.browser.screens import open_assistant
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser

WORDS_PER_SECOND = 8
ANSWER = " ".join(f"word{n}" for n in range(1000))  # two minutes at that pace: Stop comes first


class FakeInThread:
    """A FakeAnthropic serving from an event loop of its own, in a thread, for sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake: FakeAnthropic | None = None

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def __enter__(self) -> FakeAnthropic:
        self.thread.start()

        async def start() -> FakeAnthropic:
            fake = FakeAnthropic(
                tokens_per_second=WORDS_PER_SECOND, default=lambda body: Reply(text=ANSWER)
            )
            return await fake.__aenter__()

        self.fake = self.run(start())
        return self.fake

    def __exit__(self, *exc: object) -> None:
        if self.fake is not None:
            self.run(self.fake.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def system(bundle: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with FakeInThread() as fake:
        settings = {"CLAUDE_API_KEY": fake.api_key, "ANTHROPIC_BASE_URL": fake.url}
        with private_system(tmp_path_factory.mktemp("browser-provider"), settings) as started:
            yield started


def test_an_answer_grows_as_it_streams_and_stop_keeps_what_was_written(
    page: Page, account: Account
) -> None:
    open_assistant(page, account)
    page.get_by_label("Your question").fill("tell me a long story")
    page.get_by_test_id("chat-send").click()

    answer = page.locator("[data-testid=chat-answer][data-streaming=true]")
    expect(answer).to_contain_text("word3")
    early = len(answer.inner_text())
    expect(answer).to_contain_text("word12")  # still the same answer, longer now
    assert len(answer.inner_text()) > early
    expect(answer).not_to_contain_text("word999")

    page.get_by_test_id("chat-stop").click()

    expect(page.get_by_test_id("chat-send")).to_be_visible()
    expect(page.locator("[data-testid=chat-answer][data-streaming=true]")).to_have_count(0)
    shown = page.get_by_test_id("chat-message").filter(has_text="word12").last
    expect(shown).to_contain_text("Stopped. What was written so far is kept.")
    expect(shown).not_to_contain_text("word999")

    # Kept by the service too: the conversation read again has it, marked cut short.
    page.reload()
    page.get_by_test_id("chat-session").first.click()
    kept = page.get_by_test_id("chat-message").filter(has_text="word12").last
    expect(kept).to_contain_text("This answer was cut short.")
    expect(kept).not_to_contain_text("word999")
