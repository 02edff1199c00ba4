"""Facade processes (`python -m facade`) side by side on one port with FACADE_REUSE_PORT: the
kernel spreads connections over them, each answering as a replica of its own; without it a
second facade on a taken port stops at start with a clear message."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from services.runtime.config import DOMAIN_SERVICES
from tests.conftest import free_port
from tests.integration.conftest import DEAD, ROOT, service_environment

START_WITHIN = 60.0
REQUESTS = 40

Facade = tuple[asyncio.subprocess.Process, int, Path]


@contextlib.asynccontextmanager
async def facades(
    tmp_path: Path, port: int, count: int, **environ: str
) -> AsyncIterator[Callable[[], list[Facade]]]:
    """`count` facades on `port`, each with an admin port of its own; killed on exit."""
    started: list[Facade] = []
    try:
        for _ in range(count):
            admin = free_port()
            env = service_environment(
                tmp_path / "var",
                "facade",
                FACADE_PORT=str(port),
                FACADE_ADMIN_PORT=str(admin),
                **{f"{name.upper()}_ADDRS": DEAD for name in DOMAIN_SERVICES},
                **environ,
            )
            stderr = tmp_path / f"facade-{admin}.err"
            with stderr.open("wb") as err:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "facade",
                    cwd=ROOT,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=err,
                )
            started.append((process, admin, stderr))
        yield lambda: started
    finally:
        for process, _, _ in started:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def answering(http: aiohttp.ClientSession, facade: Facade) -> None:
    process, admin, stderr = facade
    deadline = asyncio.get_running_loop().time() + START_WITHIN
    while asyncio.get_running_loop().time() < deadline:
        assert process.returncode is None, stderr.read_text()
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{admin}/metrics") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the facade did not answer within {START_WITHIN:g} s")


async def requests_answered(http: aiohttp.ClientSession, admin: int) -> float:
    """The facade's own count of the HTTP requests it answered, from its /metrics."""
    async with http.get(f"http://127.0.0.1:{admin}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("stockfolio_http_requests_total{")
    )


async def test_two_facades_share_one_port_and_each_answers_some_connections(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with (
        facades(tmp_path, port, 2, FACADE_REUSE_PORT="true") as running,
        aiohttp.ClientSession() as admin_http,
    ):
        for facade in running():
            await answering(admin_http, facade)
        before = [await requests_answered(admin_http, admin) for _, admin, _ in running()]
        # A connection of its own for each request: the kernel picks a listener per
        # connection (by its addresses), so 40 of them all reaching one is a 1 in 2^39 chance.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(REQUESTS):
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    assert response.status == 200
                    assert (await response.json())["service"] == "facade"
        after = [await requests_answered(admin_http, admin) for _, admin, _ in running()]
    answered = [late - early for early, late in zip(before, after, strict=True)]
    assert sum(answered) == REQUESTS
    assert all(count > 0 for count in answered), answered


async def test_without_reuse_port_a_second_facade_on_a_taken_port_stops_at_start(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with facades(tmp_path, port, 1) as running:
        async with aiohttp.ClientSession() as http:
            await answering(http, running()[0])
        async with facades(tmp_path, port, 1) as second:
            process, _, stderr = second()[0]
            assert await asyncio.wait_for(process.wait(), START_WITHIN) != 0
            assert f"cannot listen on port {port}" in stderr.read_text()
        assert running()[0][0].returncode is None  # the first one is untouched
