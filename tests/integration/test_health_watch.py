"""The facade's health probes keep every replica's health known (facade/probes.py): a Watch
stream per replica carries each change as it happens, /health/all answers from it without a
round of Checks per request, and `live` still probes. Real gRPC servers with gRPC's own health
servicer stand in for the replicas; the background probe is slowed to a minute so that what
changes is seen through the watch alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from facade.probes import NOT_SERVING, SERVING, UNREACHABLE, HealthProbes
from tests.waiting import WAIT, until

NAME = "stockfolio.example.v1.ExampleService"
SLOW_PROBES = 60.0


class CountingHealth(HealthServicer):  # type: ignore[misc]
    """gRPC's health servicer, counting the Checks it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0
        # Cleared, a Check reads the status and then waits before answering with it.
        self.release = asyncio.Event()
        self.release.set()

    async def Check(self, request: Any, context: Any) -> Any:
        self.checks += 1
        reply = await super().Check(request, context)
        await self.release.wait()
        return reply


class Replica:
    def __init__(self) -> None:
        self.health = CountingHealth()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self.server = server
        await self.health.set(NAME, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.stop(grace=None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [Replica(), Replica()]
    for replica in started:
        await replica.start()
    yield started
    for replica in started:
        with contextlib.suppress(Exception):  # one the test stopped already
            await replica.stop()


async def statuses(probes: HealthProbes) -> list[str]:
    (report,) = await probes.check_all()
    return [replica["status"] for replica in report["addresses"]]


async def until_statuses(probes: HealthProbes, wanted: list[str]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    seen: list[str] = []
    while asyncio.get_running_loop().time() < deadline:
        seen = await statuses(probes)
        if seen == wanted:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"statuses stayed {seen}, wanted {wanted}")


async def test_changes_arrive_through_the_watch_and_answers_cost_no_check(
    replicas: list[Replica],
) -> None:
    first, second = replicas
    probes = HealthProbes(
        {"example": [first.address, second.address]},
        {"example": NAME},
        probe_interval=SLOW_PROBES,
    )
    probes.open()
    try:
        await until_statuses(probes, [SERVING, SERVING])
        # The watches may tell SERVING before the background's first round has Checked both.
        await until(lambda: min(first.health.checks, second.health.checks) >= 1, "a first round")
        checks = first.health.checks + second.health.checks
        reports = [await probes.check_all() for _ in range(50)]
        assert {r[0]["status"] for r in reports} == {SERVING}
        # Fifty answers, not one Check more than the background probe's first round.
        assert first.health.checks + second.health.checks == checks

        # A replica that stops serving: seen through its watch (the probe sleeps a minute).
        await second.health.set(NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await until_statuses(probes, [SERVING, NOT_SERVING])
        (report,) = await probes.check_all()
        assert report["status"] == SERVING  # one replica serves: the service does

        # A replica that goes away: its stream breaks, it is unreachable at once.
        await first.stop()
        await until_statuses(probes, [UNREACHABLE, NOT_SERVING])
        (report,) = await probes.check_all()
        assert report["status"] == NOT_SERVING
        assert report["addresses"][0]["error"] == "UNAVAILABLE"

        # Back on the same port: the watch reopens and hears it serve.
        await first.start(first.port)
        await second.health.set(NAME, health_pb2.HealthCheckResponse.SERVING)
        await until_statuses(probes, [SERVING, SERVING])
        assert "error" not in (await probes.check_all())[0]["addresses"][0]

        # A live round asks every replica now.
        checks = first.health.checks + second.health.checks
        (live,) = await probes.check_all(live=True)
        assert live["status"] == SERVING
        assert first.health.checks + second.health.checks == checks + 2
    finally:
        await probes.close()


async def test_the_background_probe_measures_latency_and_sees_a_replica_return(
    replicas: list[Replica],
) -> None:
    first, _ = replicas
    probes = HealthProbes({"example": [first.address]}, {"example": NAME}, probe_interval=0.05)
    probes.open()
    try:
        await until_statuses(probes, [SERVING])
        deadline = asyncio.get_running_loop().time() + WAIT
        while first.health.checks < 3:
            assert asyncio.get_running_loop().time() < deadline, "no background probes"
            await asyncio.sleep(0.02)
        (report,) = await probes.check_all()
        assert report["addresses"][0]["latencyMs"] > 0
        assert report["latencyMs"] == report["addresses"][0]["latencyMs"]
    finally:
        await probes.close()


async def test_a_check_answered_before_a_flip_the_watch_told_does_not_undo_it(
    replicas: list[Replica],
) -> None:
    first, _ = replicas
    probes = HealthProbes(
        {"example": [first.address]}, {"example": NAME}, deadline=WAIT, probe_interval=SLOW_PROBES
    )
    probes.open()
    try:
        await until_statuses(probes, [SERVING])
        first.health.release.clear()  # the next Check reads SERVING and waits before answering
        checks = first.health.checks
        live = asyncio.ensure_future(probes.check_all(live=True))
        deadline = asyncio.get_running_loop().time() + WAIT
        while first.health.checks == checks:
            assert asyncio.get_running_loop().time() < deadline, "the live round sent no Check"
            await asyncio.sleep(0.02)
        await first.health.set(NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await until_statuses(probes, [NOT_SERVING])  # told by the watch
        first.health.release.set()  # the older SERVING answer arrives now
        (answer,) = await live
        assert answer["addresses"][0]["status"] == SERVING  # what the Check read, as it was
        (known,) = (await probes.check_all())[0]["addresses"]
        assert known["status"] == NOT_SERVING  # the watch's newer word stands
        assert known["latencyMs"] > 0  # with the Check's latency
    finally:
        await probes.close()
