"""Scanning a project and telling two scans apart (the watch's whole logic)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from services.workspace.files import EntryKind
from services.workspace.watch import Change, Snapshot, differences, scan

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def changes(before: Snapshot, after: Snapshot) -> list[tuple[Change, str, EntryKind]]:
    return [(e.change, e.path, e.kind) for e in differences(before, after, NOW)]


def test_a_scan_lists_every_entry_but_the_repository(tmp_path: Path) -> None:
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("# hi\n")
    (tmp_path / "link").symlink_to(tmp_path / "README.md")
    found = scan(tmp_path)
    assert {path: kind for path, (kind, _, _) in found.items()} == {
        "src": EntryKind.DIRECTORY,
        "src/pkg": EntryKind.DIRECTORY,
        "src/pkg/a.py": EntryKind.FILE,
        "README.md": EntryKind.FILE,
        "link": EntryKind.SYMLINK,
    }
    assert found["src/pkg/a.py"][1] == 6


def test_created_modified_and_deleted_entries_are_reported_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("same")
    (tmp_path / "edit.txt").write_text("one")
    (tmp_path / "gone.txt").write_text("bye")
    before = scan(tmp_path)
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "edit.txt").write_text("two!")
    os.utime(tmp_path / "edit.txt", ns=(1, 1))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "new.md").write_text("new")
    assert changes(before, scan(tmp_path)) == [
        (Change.CREATED, "docs", EntryKind.DIRECTORY),
        (Change.CREATED, "docs/new.md", EntryKind.FILE),
        (Change.MODIFIED, "edit.txt", EntryKind.FILE),
        (Change.DELETED, "gone.txt", EntryKind.FILE),
    ]


def test_a_folder_whose_entries_change_is_not_itself_reported_as_modified(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    before = scan(tmp_path)
    (tmp_path / "src" / "a.py").write_text("x")
    os.utime(tmp_path / "src", ns=(5, 5))
    assert changes(before, scan(tmp_path)) == [(Change.CREATED, "src/a.py", EntryKind.FILE)]


def test_nothing_changed_means_no_events(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    assert changes(scan(tmp_path), scan(tmp_path)) == []
