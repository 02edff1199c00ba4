"""Terminal tabs that outlive their connection: a dropped socket and a reloaded page both join
their session again, and the replay redraws its output once, never twice; each tab's shell
starts in the project chosen for it."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse

import pytest
from playwright.sync_api import APIResponse, Locator, Page, Route, expect

from tests.browser.screens import sign_in
from tests.system_harness import Account, System, request

pytestmark = pytest.mark.browser

# Arithmetic, so the echo of the typed line cannot pass for the output.
COMMAND = "echo replayed-$((6*7))\n"
OUTPUT = "replayed-42"


def shown(page: Page) -> Locator:
    return page.locator("[role=tabpanel]:not([hidden])")


def open_terminal(page: Page) -> Locator:
    """A new tab, shown and attached; its panel (found by its session, not by being shown)."""
    tabs = page.get_by_test_id("terminal-tab")
    before = tabs.count()
    page.get_by_test_id("terminal-new").click()
    expect(tabs).to_have_count(before + 1)
    session_id = tabs.last.get_attribute("data-session-id")
    panel = page.locator(f"[role=tabpanel][id='panel-{session_id}']")
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("terminal-status")).to_have_text("Connected")
    return panel


def run_command(page: Page, panel: Locator) -> None:
    panel.locator(".xterm").click()
    page.keyboard.type(COMMAND)
    expect(panel.locator(".xterm-rows")).to_contain_text(OUTPUT)


def drop_connections(port: int) -> None:
    """Kills every TCP connection to the facade's port (ss -K), as a network failure would."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is missing: cannot cut the connection")
    done = subprocess.run(
        ["ss", "-K", "dst", "127.0.0.1", "dport", "=", str(port)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or len(done.stdout.splitlines()) < 2:
        pytest.skip(f"ss -K cannot close sockets here: {done.stderr.strip() or done.stdout}")


def test_a_dropped_connection_reconnects_and_replays_the_output_once(
    page: Page, system: System, account: Account
) -> None:
    sign_in(page, account, at="/terminal")
    panel = open_terminal(page)
    run_command(page, panel)

    drop_connections(urllib.parse.urlsplit(system.facade_url).port or 80)

    status = panel.get_by_test_id("terminal-status")
    expect(status).to_contain_text("reconnecting")
    expect(status).to_have_text("Connected")
    rows = panel.locator(".xterm-rows")
    expect(rows).to_contain_text(OUTPUT)
    assert rows.inner_text().count(OUTPUT) == 1
    # And the shell is the same one, still taking keystrokes.
    page.keyboard.type("echo again-$((2+3))\n")
    expect(rows).to_contain_text("again-5")


def test_a_reloaded_page_brings_back_its_terminals_with_their_output(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/terminal")
    run_command(page, open_terminal(page))
    open_terminal(page)
    expect(page.get_by_test_id("terminal-tab")).to_have_count(2)

    page.reload()

    expect(page.get_by_test_id("terminal-tab")).to_have_count(2)
    page.get_by_test_id("terminal-tab").first.click()
    panel = shown(page)
    expect(panel.get_by_test_id("terminal-status")).to_have_text("Connected")
    expect(panel.locator(".xterm-rows")).to_contain_text(OUTPUT)
    assert panel.locator(".xterm-rows").inner_text().count(OUTPUT) == 1


def test_each_tab_starts_its_shell_in_the_project_chosen_for_it(
    page: Page, system: System, account: Account
) -> None:
    for name in ("alpha", "beta"):
        created = request(
            "POST",
            f"{system.facade_url}/api/v1/workspace/projects",
            body={"name": name},
            token=account.access_token,
        )
        assert created.status == 201, created.body
    sign_in(page, account, at="/terminal")

    for name in ("alpha", "beta"):
        page.get_by_label("Project").select_option(label=name)
        panel = open_terminal(page)
        panel.locator(".xterm").click()
        page.keyboard.type("echo in-$(basename $PWD)\n")
        expect(panel.locator(".xterm-rows")).to_contain_text(f"in-{name}")

    tabs = page.get_by_test_id("terminal-tab")
    expect(tabs).to_have_text(["1: alpha", "2: beta"])
    tabs.first.click()
    expect(shown(page).locator(".xterm-rows")).to_contain_text("in-alpha")
    expect(shown(page).locator(".xterm-rows")).not_to_contain_text("in-beta")


def test_ctrl_bracket_moves_the_keyboard_out_of_the_terminal_to_its_tab(
    page: Page, account: Account
) -> None:
    sign_in(page, account, at="/terminal")
    panel = open_terminal(page)
    panel.locator(".xterm").click()
    page.keyboard.press("Tab")  # the shell's: focus stays in the terminal
    expect(panel.locator(".xterm textarea")).to_be_focused()

    page.keyboard.press("Control+BracketRight")

    expect(page.get_by_test_id("terminal-tab")).to_be_focused()


def test_a_terminal_started_while_the_list_still_loads_keeps_its_tab(
    page: Page, account: Account
) -> None:
    # The page's list of running terminals (as it was before the new one) arrives only after
    # the new one has its tab: a list that came back late (a loaded machine) used to replace
    # the tabs, the new one included.
    held: list[tuple[Route, APIResponse]] = []

    def hold_the_list(route: Route) -> None:
        if route.request.method == "GET":
            held.append((route, route.fetch()))
        else:
            route.continue_()

    page.route(re.compile(r".*/api/v1/terminal/terminals\?.*"), hold_the_list)
    sign_in(page, account, at="/terminal")
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page did not ask for its terminals"
    tabs = page.get_by_test_id("terminal-tab")
    page.get_by_test_id("terminal-new").click()
    expect(tabs).to_have_count(1)
    for route, answer in held:
        route.fulfill(response=answer)
    page.wait_for_timeout(500)
    expect(tabs).to_have_count(1)
    expect(shown(page).get_by_test_id("terminal-status")).to_have_text("Connected")


def test_a_new_terminal_retried_after_a_lost_answer_opens_one_shell(
    page: Page, system: System, account: Account
) -> None:
    """ "New terminal" sends an Idempotency-Key, the same while the same create is retried: the
    API opened a shell but its answer was lost, and the click again gets that shell, not a
    second one (a user's shells are few)."""
    keys: list[str | None] = []

    def lose_the_first_answer(route: Route) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the API opens the shell ...
            route.abort()  # ... and the page never hears so
        else:
            route.continue_()

    page.route("**/api/v1/terminal/terminals/create", lose_the_first_answer)
    sign_in(page, account, at="/terminal")
    page.get_by_test_id("terminal-new").click()
    expect(page.get_by_test_id("terminal-error")).to_be_visible()
    expect(page.get_by_test_id("terminal-tab")).to_have_count(0)
    panel = open_terminal(page)
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    listed = request(
        "GET", f"{system.facade_url}/api/v1/terminal/terminals", token=account.access_token
    ).body["data"]
    session_id = page.get_by_test_id("terminal-tab").first.get_attribute("data-session-id")
    assert [t["sessionId"] for t in listed] == [session_id]
    run_command(page, panel)
    # A later click is a new terminal, with a new key.
    open_terminal(page)
    assert len(keys) == 3 and keys[2] != keys[0], keys
