"""The lifecycle every fake shares: an aiohttp server on 127.0.0.1, started by `async with`;
on exit, whatever it still holds is released and the server is cleaned up."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from aiohttp import web


class FakeServer:
    """Subclasses add their routes in `routes`; `url` is where the fake answers, with
    `url_path` after the address."""

    url_path = ""
    # aiohttp's default accept queue; a fake that takes bursts of new connections asks for more.
    backlog = 128

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.url = ""
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        # No access log: it would print query strings and headers' neighbours, keys included.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=self.backlog)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}{self.url_path}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
