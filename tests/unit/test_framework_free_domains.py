"""Every services/*/domain.py is plain Python: it imports, with all it imports in turn, where
gRPC and protobuf cannot be imported at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = sorted(ROOT.glob("services/*/domain.py"))
FRAMEWORKS = ("grpc", "google.protobuf", "google.rpc", "stockfolio")

# Run in a fresh interpreter: this one has long since imported gRPC.
BLOCKED_IMPORT = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in {frameworks!r}):
            raise ImportError(f"{{name}} is a framework; a domain must not import it")
        return None

sys.meta_path.insert(0, Blocked())
import {module}
"""


def test_every_service_with_a_domain_is_checked() -> None:
    assert {p.parent.name for p in DOMAINS} >= {"assistant", "portfolio", "users"}


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda p: p.parent.name)
def test_a_domain_imports_without_grpc_or_protobuf(domain: Path) -> None:
    module = ".".join(domain.relative_to(ROOT).with_suffix("").parts)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT.format(frameworks=FRAMEWORKS, module=module)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"},
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_block_really_refuses_grpc() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT.format(frameworks=FRAMEWORKS, module="grpc")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert "grpc is a framework" in done.stderr
