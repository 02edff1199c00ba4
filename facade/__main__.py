"""python -m facade: read the config, serve the REST facade on FACADE_PORT (4110) with uvloop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

import uvloop
from aiohttp import web

from facade.app import create_app
from facade.config import FacadeConfig, load_facade_config
from facade.health import create_admin_app
from services.runtime.allocator import limit_malloc_arenas
from services.runtime.collector import PacedFullCollections, freeze_startup_objects
from services.runtime.config import ConfigError
from services.runtime.logs import configure_logging

log = logging.getLogger("stockfolio.facade")


async def serve(config: FacadeConfig) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and drain in-flight requests."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=config.runtime.shutdown_grace)
    await runner.setup()
    # /health, /services and /metrics without a token, for the cluster network only.
    admin = web.AppRunner(create_admin_app(app), access_log=None)
    await admin.setup()
    # Everything built so far (descriptors, routes, codecs, the OpenAPI document) lives as long
    # as the process: keep it out of the collector's way, which shortens latency spikes.
    gc.collect()
    freeze_startup_objects()
    # Thousands of open sockets make a full collection long: paced, not left to CPython's rule.
    collections = PacedFullCollections()
    collections.start()
    try:
        site = web.TCPSite(
            runner, config.host, config.port, backlog=1024, reuse_port=config.reuse_port or None
        )
        try:
            await site.start()
        except OSError as error:
            raise SystemExit(
                f"facade: cannot listen on port {config.port}: {error.strerror or error}"
                + ("" if config.reuse_port else " (FACADE_REUSE_PORT lets facades share it)")
            ) from None
        runtime = config.runtime
        await web.TCPSite(admin, runtime.admin_host, runtime.admin_port).start()
        log.info(
            "serving",
            extra={"host": config.host, "port": config.port, "adminPort": runtime.admin_port},
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down", extra={"graceSeconds": config.runtime.shutdown_grace})
    finally:
        await admin.cleanup()
        await runner.cleanup()
        await collections.stop()
    log.info("stopped")


def main() -> None:
    limit_malloc_arenas()  # before any thread starts (see services/runtime/allocator.py)
    try:
        config = load_facade_config()
    except ConfigError as error:
        sys.exit(f"facade: configuration error: {error}")
    configure_logging("facade", config.runtime.log_level)
    uvloop.run(serve(config))


if __name__ == "__main__":
    main()
