"""A system of a test module's own, for what the session's shared one cannot give: other
settings (a provider instead of the offline assistant), or a known first account (the admin)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.browser.conftest import SETTINGS, started_or_failed
from tests.system_harness import System


@contextmanager
def private_system(root: Path, settings: Mapping[str, str] | None = None) -> Iterator[System]:
    """Started as the shared one is (SETTINGS, then `settings`); stopped afterwards."""
    with started_or_failed(root, {**SETTINGS, **(settings or {})}) as started:
        yield started
