"""The quota's bookkeeping: a change this service makes counts at once, even when a scan ran
between the moment the change was checked and the moment it landed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.workspace.quota import QuotaExceeded, Quotas, Usage


async def test_a_change_checked_then_made_counts_until_the_next_scan(tmp_path: Path) -> None:
    quotas = Quotas(Usage(1000, 10), interval=3600)
    await quotas.check(tmp_path, size=600, files=1)  # the first check measures: empty
    (tmp_path / "a").write_bytes(b"x" * 600)
    quotas.changed(tmp_path, size=600, files=1)
    assert await quotas.usage(tmp_path) == Usage(600, 1)
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.check(tmp_path, size=600, files=1)
    assert refused.value.usage == Usage(600, 1)


async def test_a_change_that_ends_while_a_scan_runs_is_not_lost(tmp_path: Path) -> None:
    quotas = Quotas(Usage(10_000, 100), interval=3600)
    await quotas.usage(tmp_path)
    scan = asyncio.ensure_future(quotas.usage(tmp_path, fresh=True))
    await asyncio.sleep(0)  # the scan has begun (its thread may or may not see the file)
    quotas.changed(tmp_path, size=300, files=1)
    await scan
    usage = await quotas.usage(tmp_path)
    assert usage.bytes >= 300 and usage.files >= 1
    (tmp_path / "b").write_bytes(b"x" * 300)
    assert await quotas.usage(tmp_path, fresh=True) == Usage(300, 1)


async def test_a_change_during_a_scan_is_never_counted_twice(tmp_path: Path) -> None:
    quotas = Quotas(Usage(10_000, 100), interval=0)  # every look is a new scan
    await quotas.usage(tmp_path)
    (tmp_path / "b").write_bytes(b"x" * 300)  # landed before the scan: the scan sees it
    scan = asyncio.ensure_future(quotas.usage(tmp_path))
    await asyncio.sleep(0)
    quotas.changed(tmp_path, size=300, files=1)  # reported while the scan runs
    assert await scan == Usage(300, 1)  # the known usage stands: not 600
