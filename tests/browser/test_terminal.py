"""A shell in the browser: xterm.js attached to /ws/terminal, drawn under the web process's CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import sign_in
from tests.system_harness import Account

pytestmark = pytest.mark.browser


def test_a_command_typed_in_a_new_terminal_prints_its_output(page: Page, account: Account) -> None:
    sign_in(page, account, at="/terminal")
    expect(page.get_by_test_id("terminal-empty")).to_be_visible()

    page.get_by_test_id("terminal-new").click()

    expect(page.get_by_test_id("terminal-tab")).to_have_count(1)
    expect(page.get_by_test_id("terminal-status")).to_have_text("Connected")
    page.locator(".xterm").click()
    # Arithmetic, so the echo of the typed line cannot pass for the output.
    page.keyboard.type("echo stockfolio-$((6*7))-$(whoami | wc -c)\n")
    rows = page.locator(".xterm-rows")
    expect(rows).to_contain_text("stockfolio-42-")
    # xterm's own <style> elements apply (the CSP allows them): its text is not drawn in the
    # colour of its background.
    colours = page.evaluate(
        """() => {
            const row = document.querySelector('.xterm-rows > div');
            const screen = document.querySelector('.xterm-viewport');
            return [getComputedStyle(row).color, getComputedStyle(screen).backgroundColor];
        }"""
    )
    assert colours[0] != colours[1], colours


def test_a_paste_larger_than_a_socket_message_arrives_whole(page: Page, account: Account) -> None:
    # 100,000 characters at once: sent as one frame it passed the socket's 64 KiB and closed
    # it (1009), losing the paste. The shell reads raw bytes (a tty line holds 4096) and counts.
    sign_in(page, account, at="/terminal")
    page.get_by_test_id("terminal-new").click()
    expect(page.get_by_test_id("terminal-status")).to_have_text("Connected")
    page.locator(".xterm").click()
    page.keyboard.type("stty raw -echo; head -c 100000 | wc -c | sed 's/^/count-/'; stty sane\n")
    expect(page.locator(".xterm-rows")).to_contain_text("stty sane")  # the line was read
    page.keyboard.insert_text("x" * 100_000)
    expect(page.locator(".xterm-rows")).to_contain_text("count-100000", timeout=30_000)
    expect(page.get_by_test_id("terminal-status")).to_have_text("Connected")
