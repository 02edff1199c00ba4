"""The started system, as `make run` starts it: migrations, then honcho with deploy/Procfile.

One system per test process (each pytest-xdist worker that runs these starts its own, stopped
after its last test here), on free ports below 32768 and a temporary var/ folder. Teardown
stops it as Ctrl-C does (SIGINT to honcho's process group) and checks that every process left
within the grace period. Starting and reaching it: tests/system_harness.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system_harness import (
    PROCESSES,
    Account,
    HarnessError,
    System,
    child_pids,
    kill_leftovers,
    process_group_alive,
    register,
    start_system,
    stopped_codes,
)

BCRYPT_TEST_COST = "4"
ADMIN_EMAIL = "admin@e2e.stockfolio.test"
SETTINGS = {
    "STOCKFOLIO_ADMIN_EMAIL": ADMIN_EMAIL,
    "BCRYPT_COST": BCRYPT_TEST_COST,
    # Small sandbox limits, so the escape suite can run into them quickly.
    "SANDBOX_MAX_PROCESSES": "64",
    "SANDBOX_MEMORY_BYTES": str(256 * 1024 * 1024),
    # Each test registers an account of its own, all from loopback: about 30 over the package,
    # past the users service's budget per address (20 an hour).
    "REGISTRATIONS_PER_IP": "200/hour",
}


@pytest.fixture(scope="package")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    try:
        started, honcho = start_system(tmp_path_factory.mktemp("e2e"), SETTINGS)
    except HarnessError as problem:
        pytest.fail(f"the system did not start: {problem}", pytrace=False)

    yield started

    honcho.stop()
    pids = child_pids(honcho.output)
    groups = {**pids, "honcho": honcho.popen.pid}
    leftovers = {name: pid for name, pid in groups.items() if process_group_alive(pid)}
    kill_leftovers(leftovers)
    log = honcho.output.text()
    assert sorted(pids) == sorted(PROCESSES), f"honcho did not start every process:\n{log}"
    assert not leftovers, f"still running after Ctrl-C: {leftovers}\n{log}"
    assert "sending SIGKILL" not in log, f"a process outlived the grace period:\n{log}"
    codes = stopped_codes(honcho.output)
    unclean = {name: codes.get(name) for name in PROCESSES if codes.get(name) != 0}
    assert not unclean, f"processes that did not exit cleanly (name: rc): {unclean}\n{log}"


@pytest.fixture
def account(system: System) -> Account:
    return register(system)[1]
