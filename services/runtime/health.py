"""The service's health: gRPC's own health servicer, driven by dependency checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

DependencyCheck = Callable[[], Awaitable[bool]]
# Seconds between checks of a dependency that is down (measured in the fault suite: a database
# back after a restart was served only up to 5 s later, the whole interval).
DOWN_RECHECK = 0.5


class Health:
    """Owns the health servicer; every served name flips together."""

    def __init__(self, names: Sequence[str], checks: Mapping[str, DependencyCheck]) -> None:
        self.servicer = HealthServicer()
        self._names = ["", *names]
        self._checks = dict(checks)
        self.dependencies: dict[str, bool] = dict.fromkeys(checks, True)
        self.serving = False
        self.shutting_down = False

    async def set_serving(self, serving: bool) -> None:
        if self.shutting_down:
            return
        self.serving = serving
        for name in self._names:
            await self.servicer.set(name, SERVING if serving else NOT_SERVING)

    async def shut_down(self) -> None:
        self.serving = False
        self.shutting_down = True
        await self.servicer.enter_graceful_shutdown()

    async def check_dependencies(self) -> bool:
        for name, check in self._checks.items():
            try:
                ok = await asyncio.wait_for(check(), timeout=3.0)
            except Exception:  # a dependency check that fails for any reason means "down"
                ok = False
            if ok != self.dependencies.get(name):
                log.warning("dependency changed", extra={"dependency": name, "up": ok})
            self.dependencies[name] = ok
        return all(self.dependencies.values())

    async def watch(self, interval: float, down_interval: float = DOWN_RECHECK) -> None:
        """Re-check dependencies forever, flipping the served status when one goes down; while
        one is down, every `down_interval` seconds, so the service serves again soon after it
        is back (not up to a whole `interval` later)."""
        while True:
            healthy = await self.check_dependencies()
            if healthy != self.serving:
                await self.set_serving(healthy)
            await asyncio.sleep(interval if healthy else min(interval, down_interval))

    def report(self) -> dict[str, object]:
        return {
            "status": "SERVING" if self.serving else "NOT_SERVING",
            "dependencies": {k: "up" if v else "down" for k, v in self.dependencies.items()},
        }


@contextlib.asynccontextmanager
async def watching(health: Health, interval: float = 5.0):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(health.watch(interval), name="health-watch")
    try:
        yield
    finally:
        await cancel_and_wait(task)
