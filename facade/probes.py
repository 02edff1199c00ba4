"""Health probes of the domain services: grpc.health.v1 Health/Check on every replica at once.

Never a business RPC. One probe channel per replica address, kept open, with a short deadline.
Callers arriving while a service's probe is in flight share it (single flight), so a burst of
health requests costs one round of probes, and every answer is still fresh (nothing is cached).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime.channels import create_channel

PROBE_DEADLINE = 1.0
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
    ) -> None:
        """`addresses` and `grpc_names` by service name (users -> stockfolio.users.v1...)."""
        self._addresses = {name: tuple(addresses[name]) for name in grpc_names}
        self._grpc_names = dict(grpc_names)
        self._deadline = deadline
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, health_pb2_grpc.HealthStub] = {}
        self._in_flight: dict[str, asyncio.Future[Any]] = {}

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self._grpc_names)

    def addresses(self, service: str) -> tuple[str, ...]:
        return self._addresses[service]

    def open(self) -> None:
        for addresses in self._addresses.values():
            for address in addresses:
                if address in self._channels:
                    continue
                channel = create_channel([address], [], deadline=self._deadline, probe=True)
                channel.get_state(try_to_connect=True)  # connect now, not on the first probe
                self._channels[address] = channel
                self._stubs[address] = health_pb2_grpc.HealthStub(channel)

    async def close(self) -> None:
        for pending in list(self._in_flight.values()):
            pending.cancel()
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        await asyncio.gather(*(channel.close() for channel in channels))

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

    async def check(self, service: str) -> dict[str, Any]:
        """One service: SERVING when at least one replica serves. Do not mutate the answer:
        callers that arrived together share it."""
        report: dict[str, Any] = await self._shared(service, lambda: self._probe(service))
        return report

    async def check_all(self) -> list[dict[str, Any]]:
        """Every service, probed concurrently (shared, as `check`)."""
        reports: list[dict[str, Any]] = await self._shared("*", self._probe_all)
        return reports

    async def _probe_all(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._probe(s) for s in self._grpc_names)))

    async def _probe(self, service: str) -> dict[str, Any]:
        started = time.perf_counter()
        grpc_name = self._grpc_names[service]
        replicas = await asyncio.gather(
            *(self._replica(grpc_name, a) for a in self._addresses[service])
        )
        serving = any(r["status"] == SERVING for r in replicas)
        return {
            "name": service,
            "status": SERVING if serving else NOT_SERVING,
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
            "addresses": list(replicas),
        }
