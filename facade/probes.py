"""Health of the domain services, kept known rather than asked for each time.

As Envoy's active health checking and gRPC's client-side health checking do: the facade keeps a
grpc.health.v1 Health/Watch stream open to every replica (reopened with backoff when it ends;
a replica that goes away is UNREACHABLE the moment its stream breaks, a NOT_SERVING flip
arrives as it happens) and probes each replica with a light Health/Check every
`probe_interval` for its latency (which also sees a replica come back within that interval,
whatever the watch's backoff). /health/all answers from what is known; `live` (`?probe=true`)
still runs a fresh round of Checks. Never a business RPC. Callers of a live round arriving
while one is in flight share it (single flight).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime.channels import create_channel
from services.runtime.streams import follow_forever
from services.runtime.tasks import cancel_and_wait

PROBE_DEADLINE = 1.0
# Seconds between two background Checks of a replica (its latency; a replica back up).
PROBE_INTERVAL = 1.0
UNREACHABLE = "UNREACHABLE"
SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
_STATUS_NAMES = {
    value: name for name, value in health_pb2.HealthCheckResponse.ServingStatus.items()
}


class HealthProbes:
    def __init__(
        self,
        addresses: Mapping[str, Sequence[str]],
        grpc_names: Mapping[str, str],
        *,
        deadline: float = PROBE_DEADLINE,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        """`addresses` and `grpc_names` by service name (users -> stockfolio.users.v1...)."""
        self._addresses = {name: tuple(addresses[name]) for name in grpc_names}
        self._grpc_names = dict(grpc_names)
        self._deadline = deadline
        self._interval = probe_interval
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, health_pb2_grpc.HealthStub] = {}
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        # (service, address) -> its last report, from the watch and the background probe.
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        # (service, address) -> how many statuses its watch has told: a Check answered before
        # a flip the watch already told must not put the older status back.
        self._told: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self._grpc_names)

    def addresses(self, service: str) -> tuple[str, ...]:
        return self._addresses[service]

    def open(self, *, watch: bool = True) -> None:
        """Channels to every replica; with `watch`, the Watch streams and background probes."""
        for addresses in self._addresses.values():
            for address in addresses:
                if address in self._channels:
                    continue
                channel = create_channel([address], [], deadline=self._deadline, probe=True)
                channel.get_state(try_to_connect=True)  # connect now, not on the first probe
                self._channels[address] = channel
                self._stubs[address] = health_pb2_grpc.HealthStub(channel)
        if not watch:
            return
        loop = asyncio.get_running_loop()
        for service in self._grpc_names:
            for address in self._addresses[service]:
                watching = follow_forever(
                    functools.partial(self._watch, service, address),
                    _ignore,
                    name="health-watch",
                    log_extra={"upstream": service, "upstreamAddress": address},
                )
                self._tasks.append(loop.create_task(watching, name=f"watch-{address}"))
            self._tasks.append(loop.create_task(self._keep_probing(service)))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*(cancel_and_wait(task) for task in tasks))
        for pending in list(self._in_flight.values()):
            pending.cancel()
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        await asyncio.gather(*(channel.close() for channel in channels))

    async def _watch(
        self, service: str, address: str, live: asyncio.Event
    ) -> AsyncGenerator[None, None]:
        """One replica's Watch stream: each status it sends is what is known of the replica;
        a stream that fails makes it UNREACHABLE at once (a replica that went away)."""
        request = health_pb2.HealthCheckRequest(service=self._grpc_names[service])
        call = self._stubs[address].Watch(request)
        try:
            async for reply in call:
                live.set()
                self._learn(service, address, status=_STATUS_NAMES.get(reply.status, "UNKNOWN"))
                yield None
        except grpc.aio.AioRpcError as error:
            self._learn(service, address, status=UNREACHABLE, error=error.code().name)
            raise
        finally:
            call.cancel()

    async def _keep_probing(self, service: str) -> None:
        while True:
            await self._round(service)
            await asyncio.sleep(self._interval)

    async def _round(self, service: str) -> list[dict[str, Any]]:
        """A Check of every replica of `service`, each answer kept as what is known of it."""
        grpc_name = self._grpc_names[service]
        addresses = self._addresses[service]
        told = [self._told.get((service, a), 0) for a in addresses]
        reports = await asyncio.gather(*(self._replica(grpc_name, a) for a in addresses))
        for address, before, report in zip(addresses, told, reports, strict=True):
            key = (service, address)
            known = self._known.get(key)
            if known is not None and self._told.get(key, 0) != before:
                # The watch told a status while this Check was out: the watch's is newer.
                report = {**known, "latencyMs": report["latencyMs"]}
            self._known[key] = report
        return list(reports)

    def _learn(self, service: str, address: str, *, status: str, error: str = "") -> None:
        self._told[(service, address)] = self._told.get((service, address), 0) + 1
        report = dict(self._known.get((service, address), {"address": address}))
        report["status"] = status
        if error:
            report["error"] = error
        else:
            report.pop("error", None)
        self._known[(service, address)] = report

    async def _replica(self, grpc_name: str, address: str) -> dict[str, Any]:
        started = time.perf_counter()
        report: dict[str, Any] = {"address": address}
        try:
            reply = await self._stubs[address].Check(
                health_pb2.HealthCheckRequest(service=grpc_name), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            unknown = code == grpc.StatusCode.NOT_FOUND  # that replica serves something else
            report["status"] = "SERVICE_UNKNOWN" if unknown else "UNREACHABLE"
            report["error"] = code.name
        else:
            report["status"] = _STATUS_NAMES.get(reply.status, "UNKNOWN")
        report["latencyMs"] = round((time.perf_counter() - started) * 1000, 2)
        return report

    async def _shared(self, key: str, probe: Callable[[], Awaitable[Any]]) -> Any:
        """The result of the probe in flight under `key`, or of a new one."""
        pending = self._in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(probe())
            self._in_flight[key] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # Shielded: a caller that goes away does not cancel the probe the others wait for.
        return await asyncio.shield(pending)

    async def check(self, service: str, *, live: bool = False) -> dict[str, Any]:
        """One service: SERVING when at least one replica serves. From what is known, unless
        `live` or a replica has not been heard from yet (just started): then probed. Do not
        mutate the answer: callers that arrived together share it."""
        known = None if live else self._known_report(service)
        if known is not None:
            return known
        report: dict[str, Any] = await self._shared(service, lambda: self._probe(service))
        return report

    async def check_all(self, *, live: bool = False) -> list[dict[str, Any]]:
        """Every service (probed concurrently when they have to be, as `check`)."""
        known = [None if live else self._known_report(s) for s in self._grpc_names]
        if all(report is not None for report in known):
            return [report for report in known if report is not None]
        reports: list[dict[str, Any]] = await self._shared("*", self._probe_all)
        return reports

    def _known_report(self, service: str) -> dict[str, Any] | None:
        replicas = [self._known.get((service, a)) for a in self._addresses[service]]
        if any(replica is None for replica in replicas):
            return None
        return _summary(service, [r for r in replicas if r is not None], None)

    async def _probe_all(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._probe(s) for s in self._grpc_names)))

    async def _probe(self, service: str) -> dict[str, Any]:
        started = time.perf_counter()
        replicas = await self._round(service)
        return _summary(service, replicas, time.perf_counter() - started)


def _ignore(_: None) -> None:
    """The watch's messages are handled where they arrive (`_watch`)."""


def _summary(
    service: str, replicas: Sequence[dict[str, Any]], took: float | None
) -> dict[str, Any]:
    """A service's report from its replicas': its latency is the round's (a live probe) or its
    slowest replica's last probe (a known answer)."""
    serving = any(r["status"] == SERVING for r in replicas)
    if took is None:
        took = max((r.get("latencyMs", 0.0) for r in replicas), default=0.0) / 1000
    return {
        "name": service,
        "status": SERVING if serving else NOT_SERVING,
        "latencyMs": round(took * 1000, 2),
        "addresses": list(replicas),
    }
