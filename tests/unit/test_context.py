"""Correlation ids: a caller's sane id is kept, anything else is replaced by a fresh one."""

from __future__ import annotations

import pytest

from services.runtime.context import accept_correlation_id, new_correlation_id


def test_a_sane_caller_id_is_kept() -> None:
    assert accept_correlation_id("req-2024-abc_DEF.1") == "req-2024-abc_DEF.1"
    assert accept_correlation_id("x" * 128) == "x" * 128


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "bad\nid", "tab\tid", "ünïcode", "\x00"])
def test_an_unusable_id_is_replaced_by_a_fresh_one(sent: str | None) -> None:
    fresh = accept_correlation_id(sent)
    assert fresh != sent
    assert len(fresh) == 32
    assert int(fresh, 16) >= 0, "a fresh id is hex"


def test_fresh_ids_differ() -> None:
    assert len({new_correlation_id() for _ in range(1000)}) == 1000
