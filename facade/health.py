"""The facade's own routes for operators: health, the service registry and metrics.

The registry and the metrics tell an attacker what runs where and how busy it is: in
production (STOCKFOLIO_ENV=production) they answer an admin's access token only (401 without
one, 403 for anyone else; the session is checked with the users service, so a logout counts).
Prometheus scrapes them on the facade's admin port instead (FACADE_ADMIN_PORT, bound to
ADMIN_HOST: the cluster network, never the public one), where they need no token.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from facade.envelope import ApiError, failure, success
from facade.keys import CONFIG, PROBES, ROUTES, SOCKETS, STARTED_AT
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


def _live(request: web.Request) -> bool:
    """`?probe=true`: a fresh round of Checks rather than what the watches know."""
    return request.query.get("probe", "").lower() in {"1", "true", "yes"}


async def health_all(request: web.Request) -> web.Response:
    """Every domain service, from what its replicas' watches and probes tell (each replica
    probed now with `?probe=true`); 503 when any is down."""
    services = await request.app[PROBES].check_all(live=_live(request))
    down = [s["name"] for s in services if s["status"] != SERVING]
    return _answer({"status": "degraded" if down else "ok", "services": services}, down)


async def health_one(request: web.Request) -> web.Response:
    probes = request.app[PROBES]
    name = request.match_info["service"]
    if name not in probes.services:
        known = ", ".join(probes.services)
        raise ApiError(404, "NOT_FOUND", f"no service named {name!r}; known: {known}")
    report = await probes.check(name, live=_live(request))
    return _answer(report, [] if report["status"] == SERVING else [name])


async def require_admin(request: web.Request) -> None:
    """In production: the caller must hold a live admin session (ApiError 401 / 403)."""
    if not request.app[CONFIG].production:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            f"{request.path} needs an admin's access token (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = await request.app[SOCKETS].validate(token.strip())
    if "admin" not in user.roles:
        raise ApiError(403, "FORBIDDEN", f"{request.path} is for administrators only")


async def registry(request: web.Request) -> web.Response:
    """Each domain service: its addresses, where its routes live, and its health now."""
    await require_admin(request)
    return await open_registry(request)


async def open_registry(request: web.Request) -> web.Response:
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
    await require_admin(request)
    return await open_metrics(request)


async def open_metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_admin_app(main: web.Application) -> web.Application:
    """The facade's admin port (FACADE_ADMIN_PORT on ADMIN_HOST, as every service has): health,
    the registry and the metrics, without a token, for Prometheus and operators on the cluster
    network. It shares the main app's probes and routes."""
    admin = web.Application()
    admin[PROBES] = main[PROBES]
    admin[ROUTES] = main[ROUTES]
    admin[STARTED_AT] = main[STARTED_AT]
    admin.router.add_get("/health", health)
    admin.router.add_get("/services", open_registry)
    admin.router.add_get("/metrics", open_metrics)
    return admin
