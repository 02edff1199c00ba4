"""tools/openapi_doc.py writes the document the facade serves, with no system running: the web
app's generated client (`make web-client`) is built from that file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from facade.openapi import render
from facade.routes import build_routes

ROOT = Path(__file__).resolve().parents[2]


def write_document(target: Path) -> bytes:
    """Runs the tool as `make web-client` does and returns what it wrote."""
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "openapi_doc.py"), "--write", str(target)],
        check=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"},
        timeout=60,
    )
    return target.read_bytes()


def test_the_written_document_is_the_one_the_facade_serves(tmp_path: Path) -> None:
    written = write_document(tmp_path / "api" / "openapi.json")
    served, _ = render(build_routes())
    assert json.loads(written) == json.loads(served)


def test_writing_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    """make web-client-check compares the committed file byte for byte."""
    assert write_document(tmp_path / "first.json") == write_document(tmp_path / "second.json")
