"""services/runtime/allocator.py: with the limit, threads that allocate share two malloc
arenas instead of taking one each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Eight threads allocating at once (blocks past pymalloc's small-object limit go to malloc),
# then glibc's own account of its arenas on stderr.
THREADS = """
import ctypes, ctypes.util, sys, threading
if sys.argv[1] == "limited":
    from services.runtime.allocator import limit_malloc_arenas
    assert limit_malloc_arenas()
start = threading.Barrier(8)
def allocate():
    start.wait()
    kept = [bytes(4096) for _ in range(2000)]
    start.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
"""


def arenas(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", THREADS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    return len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE))


def test_limited_threads_share_two_arenas_where_unlimited_ones_take_more() -> None:
    assert arenas("default") > 2
    assert 1 <= arenas("limited") <= 2
