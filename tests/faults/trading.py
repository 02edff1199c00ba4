"""The load the write-side faults share: paper portfolios, portfolio reads, and trades created
with an `Idempotency-Key` that the client retries, with the same key, until it gets an answer
that settles it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

from tests.faults.infrastructure import Client, Load, poll, steady

SYMBOL = "AAPL"
# Answers after which the same request, with the same key, is simply sent again.
RETRIED = frozenset({0, 409, 502, 503, 504})
ATTEMPT_WITHIN = 15.0


@dataclass
class Trader:
    """One user with one paper portfolio, and every trade the API said it created."""

    client: Client
    token: str
    portfolio_id: str
    load: Load
    committed: dict[str, str] = field(default_factory=dict)  # key -> trade id, from a 201
    unsettled: set[str] = field(default_factory=set)  # keys still retried when the load ended
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # The price each trade names; empty: the market's (then trades depend on its prices).
    price: str = ""

    @classmethod
    async def open(
        cls, client: Client, load: Load, cash: str = "100000000", *, price: str = ""
    ) -> Trader:
        _, token = await client.register()
        created = await client.call(
            "POST",
            "/api/v1/portfolios",
            token=token,
            body={"name": "Faults", "kind": "paper", "initialCash": cash},
        )
        assert created.status == 201, created.body
        return cls(client, token, created.body["data"]["id"], load, price=price)

    async def attempt(self, what: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request, noted in the load; a transport error or a timeout is status 0."""
        started = time.monotonic()
        try:
            answer = await self.client.call(
                method, path, token=self.token, within=ATTEMPT_WITHIN, **kwargs
            )
        except (aiohttp.ClientError, TimeoutError):
            self.load.note(what, 0, started)
            return 0, None
        self.load.note(what, answer.status, started)
        return answer.status, answer.body

    async def read(self) -> None:
        status, body = await self.attempt("read", "GET", f"/api/v1/portfolios/{self.portfolio_id}")
        if status == 200:
            assert body["data"]["id"] == self.portfolio_id

    async def trade(self) -> None:
        """Buy one share under a fresh key, retried with that key until 201 (or the end). The
        key is the trade's notes too: a listing tells which key each trade was made under."""
        key = f"faults-{uuid.uuid4().hex}"
        order = {
            "portfolioId": self.portfolio_id,
            "side": "buy",
            "symbol": SYMBOL,
            "quantity": "1",
            "notes": key,
        }
        if self.price:
            order["price"] = self.price
        self.unsettled.add(key)
        while True:
            status, body = await self.attempt(
                "trade", "POST", "/api/v1/trades", body=order, headers={"Idempotency-Key": key}
            )
            if status == 201:
                trade = body["data"]
                assert (trade["symbol"], Decimal(trade["quantity"])) == (SYMBOL, Decimal(1)), trade
                self.committed[key] = trade["id"]
                self.unsettled.discard(key)
                return
            if status not in RETRIED or self.stop.is_set():
                return
            await asyncio.sleep(0.1)

    async def trades_listed(self) -> list[dict[str, Any]]:
        return await self.client.all_pages(
            f"/api/v1/trades?portfolioId={self.portfolio_id}", self.token
        )


@contextlib.asynccontextmanager
async def two_traders_warmed_up(
    client: Client, load: Load, warm_up: int, what: str, within: float, *, price: str = ""
) -> AsyncIterator[list[Trader]]:
    """Two traders, each read by two workers and traded by three under a steady load, once
    `warm_up` trades are confirmed (`what` names the wait); the load stops when the block ends."""
    traders = [await Trader.open(client, load, price=price) for _ in range(2)]
    workers = [t.read for t in traders for _ in range(2)]
    workers += [t.trade for t in traders for _ in range(3)]
    async with steady(load, workers):

        async def warmed_up() -> bool:
            return sum(len(t.committed) for t in traders) >= warm_up

        await poll(warmed_up, what, within=within)
        yield traders


def burst_of_trades(traders: list[Trader], count: int) -> list[asyncio.Task[None]]:
    """`count` trades sent together, taken in turn by the traders."""
    return [asyncio.create_task(traders[i % len(traders)].trade()) for i in range(count)]
