"""The fault suite (issue 15, part 5): each test starts its own processes, with a PostgreSQL
cluster and a Redis of its own, breaks one thing under load and measures what clients saw.

It runs only under `make test-faults` (STOCKFOLIO_FAULTS=1): it stops databases and kills
processes, and takes minutes. Each test records one row of the results table, printed at the
end of the run and written to var/test-artifacts/faults.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.infrastructure import (
    RESULTS,
    FaultResult,
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    results_table,
)

ENABLED = os.environ.get("STOCKFOLIO_FAULTS") == "1"
if not ENABLED:
    collect_ignore_glob = ["test_*.py"]

ARTIFACT = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "faults.md"


@pytest.fixture
def record() -> Iterator[list[FaultResult]]:
    """Where a test puts its row(s) of the results table."""
    rows: list[FaultResult] = []
    yield rows
    RESULTS.extend(rows)


@pytest.fixture(scope="session")
def shared_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of the suite's own for tests whose fault is not PostgreSQL (each test takes
    databases of its own in it)."""
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of the test's own, for a test that stops or restarts it."""
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis.start_new(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    table = results_table(RESULTS)
    terminalreporter.write_sep("=", "fault suite results")
    terminalreporter.write_line(table)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(f"# Fault suite results\n\n{table}\n")
    terminalreporter.write_line(f"written to {ARTIFACT}")
