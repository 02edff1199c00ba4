"""python -m facade.webapp: read the config, serve the built web app on WEB_PORT (4100)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from aiohttp import web

from facade.webapp.app import create_web_app
from facade.webapp.config import WebConfig, load_web_config
from services.runtime.config import ConfigError
from services.runtime.logs import configure_logging

log = logging.getLogger("stockfolio.web")


async def serve(config: WebConfig) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and finish what is in flight."""
    runner = web.AppRunner(
        create_web_app(config), access_log=None, shutdown_timeout=config.shutdown_grace
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        built = (config.dist / "index.html").is_file()
        log.info(
            "serving",
            extra={
                "host": config.host,
                "port": config.port,
                "dist": str(config.dist),
                "apiUrl": config.api_url,
                "bundle": "built" if built else "missing",
            },
        )
        if not built:
            log.warning(
                "the web app is not built: every page says to run `make web` until it is",
                extra={"dist": str(config.dist)},
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down", extra={"graceSeconds": config.shutdown_grace})
    finally:
        await runner.cleanup()
    log.info("stopped")


def main() -> None:
    try:
        config = load_web_config()
    except ConfigError as error:
        sys.exit(f"web: configuration error: {error}")
    configure_logging("web", config.log_level)
    uvloop.run(serve(config))


if __name__ == "__main__":
    main()
