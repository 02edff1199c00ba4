"""The two baseline servers every figure is divided by, each run in its own process.

A (`json`): a raw aiohttp handler answering the same JSON body as the facade's `GET /health`
(fresh `timestamp` and `correlationId` per request, as the facade's envelope has).
B (`grpc` + `hop`): a plain aiohttp handler making one trivial unary call (grpc.health.v1
`Check`) to a grpc.aio server in another process: the cheapest possible REST->gRPC hop.
All three run on uvloop, as the facade and the services do.

    python -m bench.baselines json --port P [--template '{...}']
    python -m bench.baselines grpc --port G
    python -m bench.baselines hop --port P --grpc-port G
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import uvloop
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

HOST = "127.0.0.1"
# The facade's /health shape (the seed's envelope), used when the facade's own answer is not
# available to copy.
DEFAULT_TEMPLATE: dict[str, Any] = {
    "success": True,
    "data": {"status": "ok", "service": "facade"},
    "timestamp": "",
    "correlationId": "",
    "service": "facade",
}
TEMPLATE_KEY = web.AppKey("template", dict)
STUB_KEY = web.AppKey("stub", health_pb2_grpc.HealthStub)


def fresh(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the per-request fields the facade fills in each time."""
    body = dict(template)
    if "timestamp" in body:
        body["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    if "correlationId" in body:
        body["correlationId"] = str(uuid.uuid4())
    return body


async def json_route(request: web.Request) -> web.Response:
    return web.json_response(fresh(request.app[TEMPLATE_KEY]))


async def hop_route(request: web.Request) -> web.Response:
    reply = await request.app[STUB_KEY].Check(health_pb2.HealthCheckRequest())
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return web.json_response(fresh({**DEFAULT_TEMPLATE, "data": {"status": status}}))


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_http(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
        await until_signalled()
    finally:
        await runner.cleanup()


async def serve_json(port: int, template: dict[str, Any]) -> None:
    app = web.Application()
    app[TEMPLATE_KEY] = template
    app.router.add_get("/health", json_route)
    await serve_http(app, port)


async def serve_hop(port: int, grpc_port: int) -> None:
    async with grpc.aio.insecure_channel(f"{HOST}:{grpc_port}") as channel:
        app = web.Application()
        app[STUB_KEY] = health_pb2_grpc.HealthStub(channel)
        app.router.add_get("/hop", hop_route)
        await serve_http(app, port)


async def serve_grpc(port: int) -> None:
    server = grpc.aio.server()
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if server.add_insecure_port(f"{HOST}:{port}") == 0:
        raise OSError(f"cannot bind {HOST}:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        await until_signalled()
    finally:
        await server.stop(1.0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__)
    parser.add_argument("kind", choices=["json", "grpc", "hop"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--template", default="", help="the JSON body to answer (kind json)")
    args = parser.parse_args(argv)
    if args.kind == "json":
        template = json.loads(args.template) if args.template else DEFAULT_TEMPLATE
        uvloop.run(serve_json(args.port, template))
    elif args.kind == "grpc":
        uvloop.run(serve_grpc(args.port))
    elif args.grpc_port:
        uvloop.run(serve_hop(args.port, args.grpc_port))
    else:
        parser.error("hop needs --grpc-port")


if __name__ == "__main__":
    main(sys.argv[1:])
