"""Two users replicas over one shared database, reached through ONE channel from
`create_channel`: calls spread over both, and when one replica is killed mid-stream, idempotent
calls keep succeeding on the survivor (round robin, health checks and retries, all gRPC's own)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer
from services.runtime.channels import create_channel
from tests.integration.conftest import ROOT, ServiceProcess, Spawn, service_environment

USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
CALLERS = 6
BEFORE_KILL = 50  # GetMe calls each replica must have served before one is killed
AFTER_KILL = 300  # GetMe calls the survivor must serve after the kill
WITHIN = 120.0  # seconds; only catches a hang, never decides pass/fail on speed


def migrate(database_url: str, var_dir: Path) -> None:
    env = service_environment(var_dir, DATABASE_URL=database_url)
    subprocess.run(
        [sys.executable, "-m", "services.runtime.migrate", "users"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


async def served(replica: ServiceProcess) -> float:
    return await replica.handled("GetMe", "OK")


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while loop.time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_idempotent_calls_survive_a_replica_killed_mid_stream(
    spawn: Spawn, tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    if database == "postgresql":
        database_url = str(request.getfixturevalue("postgres_url"))
    else:
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    await asyncio.to_thread(migrate, database_url, tmp_path / "var")
    shared = {"DATABASE_URL": database_url, "BCRYPT_COST": "4", "SHUTDOWN_GRACE": "2"}

    async with (
        spawn("users", **shared) as doomed,
        spawn("users", **shared) as survivor,
        create_channel([doomed.address, survivor.address], [USERS], deadline=10) as channel,
    ):
        stub = users_pb2_grpc.UsersServiceStub(channel)
        registered = await stub.Register(
            users_pb2.RegisterRequest(email="ada@example.com", password="correct-horse-9")
        )
        metadata = (bearer(registered.tokens.access_token),)

        failures: list[str] = []
        answered = 0
        stop = asyncio.Event()

        async def caller() -> None:
            nonlocal answered
            while not stop.is_set():
                try:
                    reply = await stub.GetMe(users_pb2.GetMeRequest(), metadata=metadata)
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")
                else:
                    assert reply.user.email == "ada@example.com"
                    answered += 1

        callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        try:

            async def both_served() -> bool:
                counts = await asyncio.gather(served(doomed), served(survivor))
                return min(counts) >= BEFORE_KILL

            await wait_until(both_served, f"both replicas served {BEFORE_KILL} calls")
            answered_at_kill = answered
            doomed.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(doomed.process.wait(), timeout=WITHIN)
            at_kill = await served(survivor)

            async def survivor_carried_on() -> bool:
                return await served(survivor) >= at_kill + AFTER_KILL

            await wait_until(survivor_carried_on, f"the survivor served {AFTER_KILL} more")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*callers), timeout=WITHIN)

        assert failures == [], f"{len(failures)} failed calls, e.g. {failures[:3]}"
        assert answered >= answered_at_kill + AFTER_KILL
        assert doomed.process.returncode == -signal.SIGKILL
