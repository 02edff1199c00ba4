"""The plain-HTTP admin port (gRPC port + 1000): `/health` and `/metrics` without gRPC tools."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.runtime.health import Health

HEALTH_KEY = web.AppKey("health", Health)
SERVICE_KEY = web.AppKey("service", str)


async def health_route(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    body = {"service": request.app[SERVICE_KEY], **health.report()}
    return web.json_response(body, status=200 if health.serving else 503)


async def metrics_route(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def create_admin_app(service: str, health: Health) -> web.Application:
    app = web.Application()
    app[HEALTH_KEY] = health
    app[SERVICE_KEY] = service
    app.router.add_get("/health", health_route)
    app.router.add_get("/metrics", metrics_route)
    return app


async def start_admin(service: str, health: Health, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_admin_app(service, health), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
