"""A write cut short by kill -9 (a real process, killed mid-write): its temporary file is in
the volume's hidden staging folder, never in the project, so no listing shows it and no quota
counts it; the sweep removes it once it is stale, and leaves what live writers are making."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from services.runtime.pagination import Page
from services.workspace.files import Files
from services.workspace.paths import atomic_write
from services.workspace.quota import Usage, measure
from services.workspace.staging import STALE_AFTER, Sweeper, staging_folder, sweep
from tests.integration.conftest import ROOT

# A writer that sends its first chunk, says so, and waits (for the kill) before the rest.
WRITER = """
import asyncio, sys
from pathlib import Path
from services.workspace.paths import atomic_write

async def chunks():
    yield b"x" * 4096
    print("writing", flush=True)
    await asyncio.Event().wait()
    yield b"never"

target, project, staging = map(Path, sys.argv[1:4])
asyncio.run(atomic_write(target, chunks(), inside=project, staging=staging))
"""


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A workspace volume: alice's project `site` holding one file."""
    root = tmp_path / "workspaces"
    (root / "alice" / "site").mkdir(parents=True)
    (root / "alice" / "site" / "kept.txt").write_text("kept\n")
    return root


async def killed_mid_write(target: Path, project: Path, staging: Path) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(target),
        str(project),
        str(staging),
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"},
        stdout=asyncio.subprocess.PIPE,
    )
    assert writer.stdout is not None
    assert await asyncio.wait_for(writer.stdout.readline(), 30) == b"writing\n"
    writer.send_signal(signal.SIGKILL)
    assert await writer.wait() == -signal.SIGKILL


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


async def test_a_write_killed_midway_is_not_listed_not_counted_and_swept_once_stale(
    volume: Path,
) -> None:
    project, staging = volume / "alice" / "site", staging_folder(volume)
    files = Files(max_text_bytes=1 << 20, max_upload_bytes=1 << 20, staging=staging)
    before = measure(volume / "alice")

    await killed_mid_write(project / "new.txt", project, staging)

    entries, total = await files.list(project, "", Page(1, 100))
    assert ([e.path for e in entries], total) == (["kept.txt"], 1)
    assert measure(volume / "alice") == before == Usage(5, 1)
    (left,) = staging.iterdir()
    assert left.name.startswith(".new.txt.") and left.stat().st_size == 4096

    assert sweep(staging, older_than=STALE_AFTER) == [], "a write may still be going on"
    age(left, STALE_AFTER + 1)
    assert sweep(staging, older_than=STALE_AFTER) == [left.name]
    assert list(staging.iterdir()) == []


async def test_a_finished_write_goes_through_staging_and_leaves_nothing_there(
    volume: Path,
) -> None:
    project, staging = volume / "alice" / "site", staging_folder(volume)
    files = Files(max_text_bytes=1 << 20, max_upload_bytes=1 << 20, staging=staging)
    written = await files.create(project, "docs/new.txt", "hello\n", "utf-8", directory=False)
    assert (written.path, written.size) == ("docs/new.txt", 6)
    assert (project / "docs" / "new.txt").read_text() == "hello\n"
    assert sorted(p.name for p in (project / "docs").iterdir()) == ["new.txt"]
    assert list(staging.iterdir()) == []


def on_another_file_system(volume: Path) -> Path:
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == volume.stat().st_dev:
        pytest.skip("no second file system to stage on")
    return elsewhere


async def test_a_staging_folder_on_another_file_system_is_not_used(volume: Path) -> None:
    elsewhere = on_another_file_system(volume)
    target = volume / "alice" / "site" / "kept.txt"
    assert (await atomic_write(target, [b"new\n"], staging=elsewhere)).size == 4
    assert target.read_text() == "new\n"


async def test_the_sweeper_sweeps_at_start_only_what_is_stale(volume: Path) -> None:
    staging = staging_folder(volume)
    dead_file, dead_build = staging / ".a.txt.k2j4h5g6.tmp", staging / "0b1c-project"
    live_file = staging / ".b.txt.a1b2c3d4.tmp"
    dead_file.write_bytes(b"partial")
    (dead_build / "src").mkdir(parents=True)
    live_file.write_bytes(b"being written")
    age(dead_file, 120)
    age(dead_build, 120)
    (staging / "link").symlink_to(volume / "alice")
    age(staging / "link", 120)

    sweeper = Sweeper(staging, older_than=60, every=3600)
    sweeper.start()
    try:
        for _ in range(100):
            if not dead_file.exists():
                break
            await asyncio.sleep(0.02)
    finally:
        await sweeper.close()
    assert sorted(p.name for p in staging.iterdir()) == [live_file.name]
    assert (volume / "alice" / "site" / "kept.txt").read_text() == "kept\n", "links not followed"
