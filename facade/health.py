"""The facade's own routes for operators: health, the service registry and metrics."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from facade.envelope import ApiError, failure, success
from facade.keys import PROBES, ROUTES, STARTED_AT
from facade.probes import SERVING
from facade.routes import DOMAIN_APIS, route_prefixes


async def health(request: web.Request) -> web.Response:
    """The facade itself: it answers, so it is up."""
    uptime = time.monotonic() - request.app[STARTED_AT]
    return success({"status": "ok", "service": "facade", "uptime": round(uptime, 3)})


def _answer(report: Any, down: list[str]) -> web.Response:
    if not down:
        return success(report)
    error = ApiError(503, "SERVICE_UNAVAILABLE", f"not serving: {', '.join(down)}")
    return failure(error, data=report)


async def health_all(request: web.Request) -> web.Response:
    """Every domain service, each replica probed concurrently; 503 when any is down."""
    services = await request.app[PROBES].check_all()
    down = [s["name"] for s in services if s["status"] != SERVING]
    return _answer({"status": "degraded" if down else "ok", "services": services}, down)


async def health_one(request: web.Request) -> web.Response:
    probes = request.app[PROBES]
    name = request.match_info["service"]
    if name not in probes.services:
        known = ", ".join(probes.services)
        raise ApiError(404, "NOT_FOUND", f"no service named {name!r}; known: {known}")
    report = await probes.check(name)
    return _answer(report, [] if report["status"] == SERVING else [name])


async def registry(request: web.Request) -> web.Response:
    """Each domain service: its addresses, where its routes live, and its health now."""
    probes = request.app[PROBES]
    routes = request.app[ROUTES]
    found = []
    for check in await probes.check_all():
        name = check["name"]
        found.append(
            {
                "name": name,
                "grpcService": DOMAIN_APIS[name].full_name,
                "addresses": list(probes.addresses(name)),
                "routePrefixes": route_prefixes(r for r in routes if r.service == name),
                "routes": sum(1 for r in routes if r.service == name),
                "health": {k: v for k, v in check.items() if k != "name"},
            }
        )
    return success({"services": found})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
