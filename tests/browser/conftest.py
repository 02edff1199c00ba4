"""Browser tests: Debian's Chromium, driven by Playwright, against the system as `make run`
starts it (migrations, then honcho with deploy/Procfile, the web process serving web/dist).

One system per test process (each pytest-xdist worker that runs browser tests starts its own),
one Chromium per test file; per test a fresh user and a fresh browser context (no storage shared
between tests). The bundle is built first with `make web` (a no-op when it is fresh), by one
worker at a time. Every test leaves a screenshot in var/test-artifacts/<test>.png, failed or
not, and fails on an uncaught error in the page or a Content-Security-Policy violation.

Without Chromium, or Node and npm (no bundle), the tests skip with the reason; with
STOCKFOLIO_REQUIRE_SERVERS=1 (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.browser.screens import CHROMIUM_ARGS
from tests.system_harness import (
    REPO,
    Account,
    HarnessError,
    System,
    register,
    running_system,
)

REQUIRE = os.environ.get("STOCKFOLIO_REQUIRE_SERVERS") == "1"
CHROMIUM = Path(os.environ.get("STOCKFOLIO_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "var" / "test-artifacts"
DIST = REPO / "web" / "dist"
BUILD_LOCK = REPO / "var" / "web-build.lock"
BUILD_TIMEOUT = 900.0
# How long an expectation polls the page before it fails (live prices tick every 250 ms here).
EXPECT_TIMEOUT_MS = 15_000
SETTINGS = {
    "BCRYPT_COST": "4",
    "MOCK_UPDATE_INTERVAL": "250",
    # Sockets notice a session revoked elsewhere within this.
    "WS_SESSION_RECHECK": "0.5",
    "SESSION_CHECK_TTL": "0.5",
    # A long conversation is written through the API before its page is read.
    "ASSISTANT_MESSAGES_RATE": "600/minute",
    # Each test registers an account of its own, all from loopback: about 110 over the session,
    # past the users service's budget per address (20 an hour).
    "REGISTRATIONS_PER_IP": "500/hour",
}


def unavailable(reason: str) -> NoReturn:
    if REQUIRE:
        pytest.fail(f"{reason} (STOCKFOLIO_REQUIRE_SERVERS=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def bundle() -> Path:
    """web/dist, built by `make web` when missing or stale."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium is missing at {CHROMIUM}: apt-get install chromium")
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("Node.js and npm are missing, so the web app cannot be built")
    BUILD_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with BUILD_LOCK.open("w") as lock:
        # Workers build one after another: the first builds, the others find the bundle fresh.
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(
            ["make", "--no-print-directory", "web"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    if build.returncode != 0 or not (DIST / "index.html").is_file():
        pytest.fail(
            f"make web did not build {DIST / 'index.html'} (exit {build.returncode}):\n"
            f"{build.stdout}{build.stderr}",
            pytrace=False,
        )
    return DIST


@pytest.fixture(scope="session")
def system(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with started_or_failed(tmp_path_factory.mktemp("browser"), SETTINGS) as started:
        yield started


@contextlib.contextmanager
def started_or_failed(root: Path, settings: Mapping[str, str]) -> Iterator[System]:
    """A running system, stopped afterwards; one that does not start fails the test."""
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(running_system(root, settings))
        except HarnessError as problem:
            pytest.fail(f"the system did not start: {problem}", pytrace=False)
        yield started


# Per test file: Playwright's sync API keeps an asyncio loop running while it is open, and
# pytest-xdist hands a worker files in order of size (a browser file may come before an asyncio
# one); once closed, the worker's next asyncio test runs as usual.
@pytest.fixture(scope="module")
def browser(bundle: Path) -> Iterator[Browser]:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def artifact_name(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).strip("-") + ".png"


@pytest.fixture
def page(browser: Browser, system: System, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context at the web process's origin; screenshotted when the test ends."""
    context = browser.new_context(
        base_url=system.web_url, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"CSP: {message.text}")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        opened.screenshot(path=ARTIFACTS / artifact_name(request.node.name), full_page=True)
        context.close()
    assert not problems, "the page reported:\n" + "\n".join(problems)


@pytest.fixture
def account(system: System) -> Account:
    """A fresh user, registered through the API."""
    return register(system)[1]
