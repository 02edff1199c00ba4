"""A system of a test module's own, for what the session's shared one cannot give: other
settings (a provider instead of the offline assistant), or a known first account (the admin)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser.conftest import SETTINGS
from tests.system_harness import HarnessError, System, child_pids, kill_leftovers, start_system


@contextmanager
def private_system(root: Path, settings: Mapping[str, str] | None = None) -> Iterator[System]:
    """Started as the shared one is (SETTINGS, then `settings`); stopped afterwards."""
    try:
        started, honcho = start_system(root, {**SETTINGS, **(settings or {})})
    except HarnessError as problem:
        pytest.fail(f"the system did not start: {problem}", pytrace=False)
    try:
        yield started
    finally:
        honcho.stop()
        kill_leftovers(child_pids(honcho.output))
