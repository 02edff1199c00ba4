"""A replica killed (-9) with calls in flight, behind the real facade: a safe read it had taken
is answered by the other replica, within the same deadline; a create it had taken is never sent
again (it answers 503, and the client retries it with its Idempotency-Key if it has one), and
the calls that died with it do not open the service's circuit while the other one serves.

The replicas are processes of their own (tests/integration/held_replica.py) so that the kill is
a real one: the kernel resets their connections under the calls."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from facade.breaker import THRESHOLD
from tests.conftest import free_port
from tests.integration.conftest import ROOT, Client, FacadeInFront, Issue

WAIT = 30.0
IN_FLIGHT = 3  # calls the doomed replica holds when it is killed


@dataclass
class ReplicaProcess:
    name: str
    port: int
    process: asyncio.subprocess.Process
    took: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def follow(self) -> None:
        """Count the calls the replica announces as it takes them."""
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            words = line.decode().split()
            if words[:1] == ["took"]:
                self.took[words[1]] += 1

    async def kill(self) -> int:
        self.process.send_signal(signal.SIGKILL)
        return await self.process.wait()


@contextlib.asynccontextmanager
async def replica(name: str, mode: str) -> AsyncIterator[ReplicaProcess]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.held_replica",
        str(port),
        name,
        mode,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), WAIT)
    assert ready.strip() == b"serving", ready
    started = ReplicaProcess(name, port, process)
    following = asyncio.create_task(started.follow())
    try:
        yield started
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.wait_for(following, WAIT)


Request = Callable[[], Coroutine[Any, Any, tuple[int, Any]]]


async def until_taken(
    doomed: ReplicaProcess, rpc: str, send: Request, count: int = IN_FLIGHT
) -> list[asyncio.Task[Any]]:
    """Requests sent one after another (round robin spreads them) until the doomed replica has
    taken `count` of them; every request sent, the ones it holds among them."""
    sent: list[asyncio.Task[Any]] = []
    for _ in range(400):
        if doomed.took[rpc] >= count:
            return sent
        sent.append(asyncio.create_task(send()))
        await asyncio.sleep(0.02)
    raise AssertionError(f"{doomed.name} took {doomed.took[rpc]} of {len(sent)} {rpc} calls")


def sender(client: Client, method: str, headers: dict[str, str], **kwargs: Any) -> Request:
    async def send() -> tuple[int, Any]:
        answer = await client.request(method, "/api/v1/portfolios", headers=headers, **kwargs)
        return answer.status, await answer.json()

    return send


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("holds", id="before it answered"),
        # Response headers received: gRPC's own retryPolicy no longer retries the call.
        pytest.param("holds-answering", id="after it began to answer"),
    ],
)
async def test_a_read_in_flight_on_a_killed_replica_is_answered_by_the_other(
    facade_in_front: FacadeInFront, bearer: Issue, mode: str
) -> None:
    auth = dict(bearer())
    headers = {"Authorization": auth["authorization"]}
    async with (
        replica("doomed", mode) as doomed,
        replica("survivor", "answers") as survivor,
        facade_in_front({"portfolio": f"{doomed.address},{survivor.address}"}) as client,
    ):
        reads = await until_taken(doomed, "ListPortfolios", sender(client, "GET", headers))
        assert await doomed.kill() == -signal.SIGKILL

        answers = await asyncio.wait_for(asyncio.gather(*reads), WAIT)
        assert [status for status, _ in answers] == [200] * len(reads)
        assert {body["data"][0]["name"] for _, body in answers} == {"survivor"}
        assert survivor.took["ListPortfolios"] == len(reads)


async def test_a_create_in_flight_on_a_killed_replica_is_not_sent_again(
    facade_in_front: FacadeInFront, bearer: Issue
) -> None:
    auth = dict(bearer())
    headers = {"Authorization": auth["authorization"]}
    async with (
        replica("doomed", "holds-answering") as doomed,
        replica("survivor", "answers") as survivor,
        facade_in_front({"portfolio": f"{doomed.address},{survivor.address}"}) as client,
    ):
        # More than the breaker's threshold: all fail at once, and must not open the circuit.
        held = THRESHOLD + 1
        create = sender(client, "POST", headers, json={"name": "x"})
        creates = await until_taken(doomed, "CreatePortfolio", create, held)
        assert await doomed.kill() == -signal.SIGKILL

        answers = await asyncio.wait_for(asyncio.gather(*creates), WAIT)
        statuses = collections.Counter(status for status, _ in answers)
        assert statuses == {201: len(creates) - held, 503: held}
        assert survivor.took["CreatePortfolio"] == statuses[201], "nothing sent twice"
        assert {body["error"] for status, body in answers if status == 503} == {"UNAVAILABLE"}

        status, body = await sender(client, "GET", headers)()
        assert (status, body["data"][0]["name"]) == (200, "survivor"), "the circuit stays closed"
