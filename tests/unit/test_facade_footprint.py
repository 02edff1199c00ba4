"""What a facade process loads: no database layer ever (it has no database), and no Redis
client without REDIS_URL. Each costs the process memory for nothing (SQLAlchemy about 16 MB,
the Redis client with the OpenTelemetry SDK it loads about 8 MB), and issue 4's facade must
hold 5,000 sockets in under 200 MB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter (this one has imported everything): start the app as
# `python -m facade` does, then say which of the heavy packages were loaded.
STARTED = """
import asyncio, json, sys
from aiohttp import web
import facade.__main__
from facade.app import create_app
from facade.config import load_facade_config

async def main():
    runner = web.AppRunner(create_app(load_facade_config()))
    await runner.setup()
    await runner.cleanup()

asyncio.run(main())
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "redis"})))
"""


def loaded(tmp_path: Path, **environ: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", STARTED],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
            "STOCKFOLIO_ENV": "development",
            "STOCKFOLIO_VAR_DIR": str(tmp_path / "var"),
            **environ,
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_the_facade_loads_neither_sqlalchemy_nor_redis_without_redis_url(tmp_path: Path) -> None:
    assert loaded(tmp_path) == []


def test_with_redis_url_the_facade_loads_redis_and_still_no_sqlalchemy(tmp_path: Path) -> None:
    assert loaded(tmp_path, REDIS_URL="redis://127.0.0.1:6379/15") == ["redis"]
