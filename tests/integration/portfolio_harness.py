"""Fixtures for the portfolio service's integration tests (in tests/conftest.py's
`pytest_plugins`): a migrated portfolio database of its own beside the users one, a real users
service for tokens, and a real portfolio server on port 0 over the simulated market, held still
unless asked; `statements`, the SQL a test sends to it. And the calls its tests share: the
event stream collected, closes stored, CSV imported and exported, splits, realized gains,
targets and rebalancing, orders; the simulated market's rates and a stand-in event hub."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2
from sqlalchemy import event, update
from sqlalchemy.engine import Connection, Engine, make_url
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.portfolio.currencies import SimulatedRates
from services.portfolio.orm import portfolios
from services.portfolio.records import RecordedTrade
from services.portfolio.repository import PriceRepository
from services.portfolio.server import build as build_portfolio
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database, normalize_url
from services.runtime.server import running
from tests.conftest import facade_credentials, service_database

PASSWORD = "correct-horse-9"
Metadata = tuple[tuple[str, str], ...]
# The simulated market's seed (MOCK_SEED): its prices and rates are known before a test runs.
SEED = 7
# The `from` and `to` every report over a period refuses, each with the field it names.
BAD_PERIODS: list[tuple[dict[str, object], str]] = [
    ({"from": "2024-12-31", "to": "2024-01-01"}, "from"),
    ({"from": "2024-02-30"}, "from"),
    ({"to": "31/12/2024"}, "to"),
]


@pytest.fixture
def portfolio_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A migrated portfolio database on the same engine as `database_url` (users keeps that
    one: each service owns its own database and its own migration history)."""
    with service_database("portfolio", database_url, tmp_path) as url:
        yield url


@pytest.fixture
async def portfolio_db(portfolio_database_url: str) -> AsyncIterator[Database]:
    """The portfolio database, open for the test (the service's own use-case classes over it,
    no server), closed after."""
    database = Database(portfolio_database_url)
    try:
        yield database
    finally:
        await database.close()


@dataclass
class PortfolioService:
    """A running portfolio service and what a test needs to talk to it."""

    stub: portfolio_pb2_grpc.PortfolioServiceStub
    users: users_pb2_grpc.UsersServiceStub
    database_url: str
    config: RuntimeConfig

    async def account(self, email: str | None = None) -> tuple[Metadata, str]:
        """Register a new user: their bearer metadata and user id."""
        reply = await self.users.Register(
            users_pb2.RegisterRequest(
                email=email or f"u{uuid.uuid4().hex[:10]}@example.com", password=PASSWORD
            )
        )
        return (bearer(reply.tokens.access_token),), reply.user.id

    async def user(self) -> Metadata:
        """Register a new user; their bearer metadata."""
        return (await self.account())[0]

    def service_token(self) -> Metadata:
        return facade_credentials().metadata()

    async def portfolio(
        self, who: Metadata, name: str = "Main", **fields: object
    ) -> portfolio_pb2.Portfolio:
        request = portfolio_pb2.CreatePortfolioRequest(name=name, **fields)  # type: ignore[arg-type]
        made: portfolio_pb2.Portfolio = (
            await self.stub.CreatePortfolio(request, metadata=who)
        ).portfolio
        return made

    async def read(self, who: Metadata, portfolio_id: str) -> portfolio_pb2.Portfolio:
        """The portfolio as GetPortfolio answers `who`."""
        request = portfolio_pb2.GetPortfolioRequest(id=portfolio_id)
        found: portfolio_pb2.Portfolio = (
            await self.stub.GetPortfolio(request, metadata=who)
        ).portfolio
        return found

    async def user_with_portfolio(
        self, name: str = "Main", **fields: object
    ) -> tuple[Metadata, portfolio_pb2.Portfolio]:
        """A new user's bearer metadata and a portfolio of theirs (`fields` as in `portfolio`)."""
        who = await self.user()
        return who, await self.portfolio(who, name, **fields)

    async def user_beside_a_stranger(
        self,
    ) -> tuple[Metadata, portfolio_pb2.Portfolio, portfolio_pb2.Portfolio]:
        """A new user's bearer metadata and a portfolio of theirs, and another user's portfolio
        (one they must not see)."""
        _, theirs = await self.user_with_portfolio()
        who, mine = await self.user_with_portfolio()
        return who, mine, theirs

    async def trade(
        self,
        who: Metadata,
        portfolio_id: str,
        side: str,
        quantity: str,
        price: str = "",
        symbol: str = "",
        **fields: object,
    ) -> portfolio_pb2.Trade:
        request = portfolio_pb2.CreateTradeRequest(
            portfolio_id=portfolio_id,
            side=portfolio_pb2.TradeSide.Value(f"TRADE_SIDE_{side.upper()}"),
            symbol=symbol,
            quantity=quantity,
            price=price,
            **fields,  # type: ignore[arg-type]
        )
        recorded: portfolio_pb2.Trade = (await self.stub.CreateTrade(request, metadata=who)).trade
        return recorded

    async def trade_count(self, who: Metadata, portfolio_id: str) -> int:
        """How many trades the portfolio holds, as ListTrades counts them."""
        reply = await self.stub.ListTrades(
            portfolio_pb2.ListTradesRequest(portfolio_id=portfolio_id), metadata=who
        )
        total: int = reply.pagination.total
        return total

    def database(self) -> Database:
        return Database(self.database_url)

    async def forget_stored_books(self) -> None:
        """Every portfolio's stored book dropped, as data from before the stored book (or of an
        older format): only a replay answers."""
        db = self.database()
        try:
            async with db.transaction() as session:
                await session.execute(update(portfolios).values(book=None))
        finally:
            await db.close()


StartPortfolio = Callable[..., contextlib.AbstractAsyncContextManager[PortfolioService]]


@pytest.fixture
def start_portfolio(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    portfolio_database_url: str,
) -> StartPortfolio:
    """`start_portfolio(**env)` runs a portfolio server; keyword arguments are environment
    variables. Prices are the simulated market's opening prices (it does not move) and the
    calculator and the savings-plan job wait an hour, unless the test says otherwise."""

    @contextlib.asynccontextmanager
    async def start(**environ: str) -> AsyncIterator[PortfolioService]:
        settings = {
            "USE_MOCK_PRICES": "true",
            "MOCK_SEED": str(SEED),
            "MOCK_UPDATE_INTERVAL": "3600000",
            "PORTFOLIO_REVALUE_INTERVAL": "3600",
            "PORTFOLIO_PLAN_INTERVAL": "3600",
            **environ,
        }
        users_address = users_service.addresses["users"][0]
        # The portfolio service reads its own settings from the runtime config's environment.
        config = make_config(
            "portfolio",
            PORTFOLIO_DATABASE_URL=portfolio_database_url,
            USERS_ADDRS=users_address,
            **settings,
        )
        async with (
            running(config, build_portfolio, port=0, grace=0) as service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
            grpc.aio.insecure_channel(users_address) as users_channel,
        ):
            yield PortfolioService(
                portfolio_pb2_grpc.PortfolioServiceStub(channel),
                users_pb2_grpc.UsersServiceStub(users_channel),
                portfolio_database_url,
                config,
            )

    return start


@pytest.fixture
async def portfolio_service(start_portfolio: StartPortfolio) -> AsyncIterator[PortfolioService]:
    async with start_portfolio() as service:
        yield service


@pytest.fixture
def statements(portfolio_database_url: str) -> Iterator[list[str]]:
    """Every SQL statement sent to the portfolio database from this process (the users
    service runs here too), and "COMMIT" at each commit."""
    sent: list[str] = []
    database = make_url(normalize_url(portfolio_database_url)).database

    def on_execute(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if conn.engine.url.database == database:
            sent.append(" ".join(statement.split()))

    def on_commit(conn: Connection) -> None:
        if conn.engine.url.database == database:
            sent.append("COMMIT")

    event.listen(Engine, "before_cursor_execute", on_execute)
    event.listen(Engine, "commit", on_commit)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)
        event.remove(Engine, "commit", on_commit)


Event = portfolio_pb2.StreamPortfolioEventsResponse


@contextlib.asynccontextmanager
async def collecting(service: PortfolioService) -> AsyncIterator[list[Event]]:
    """Every event the service streams, gathered in the background once the stream is open."""
    call = service.stub.StreamPortfolioEvents(
        portfolio_pb2.StreamPortfolioEventsRequest(), metadata=service.service_token()
    )
    await call.initial_metadata()  # sent once the server has subscribed
    events: list[Event] = []

    async def read() -> None:
        async for message in call:
            events.append(message)

    reader = asyncio.create_task(read())
    try:
        yield events
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await reader


async def store_closes(s: PortfolioService, symbol: str, closes: dict[date, str]) -> None:
    """Writes daily closes straight into the service's price history."""
    db = s.database()
    try:
        async with db.transaction() as session:
            for day, close in closes.items():
                await PriceRepository(session).record(symbol, day, Decimal(close))
    finally:
        await db.close()


def rate(base: str, quote: str, day: date) -> Decimal:
    return SimulatedRates(SEED).close(base, quote, day)[1]


class Events:
    """Stands in for the event hub: keeps every trade published to it."""

    def __init__(self) -> None:
        self.published: list[RecordedTrade] = []

    async def trades_recorded(self, user_id: str, recorded: list[RecordedTrade]) -> None:
        self.published.extend(recorded)


async def import_csv(
    service: PortfolioService, who: Metadata, portfolio_id: str, text: str, dry_run: bool = False
) -> portfolio_pb2.ImportTradesResponse:
    request = portfolio_pb2.ImportTradesRequest(
        portfolio_id=portfolio_id, csv=text, dry_run=dry_run
    )
    reply: portfolio_pb2.ImportTradesResponse = await service.stub.ImportTrades(
        request, metadata=who
    )
    return reply


async def export(
    service: PortfolioService, who: Metadata, portfolio_id: str, format_: str
) -> list[httpbody_pb2.HttpBody]:
    call = service.stub.ExportPortfolio(
        portfolio_pb2.ExportPortfolioRequest(portfolio_id=portfolio_id, format=format_),
        metadata=who,
    )
    return [chunk async for chunk in call]


async def export_text(s: PortfolioService, who: Metadata, portfolio_id: str) -> str:
    return b"".join(c.data for c in await export(s, who, portfolio_id, "csv")).decode()


async def split(
    s: PortfolioService,
    who: Metadata,
    portfolio_id: str,
    symbol: str,
    day: str,
    numerator: int,
    denominator: int,
    price: str = "",
) -> portfolio_pb2.StockSplit:
    request = portfolio_pb2.CreateSplitRequest(
        portfolio_id=portfolio_id,
        symbol=symbol,
        date=day,
        numerator=numerator,
        denominator=denominator,
        price=price,
    )
    made: portfolio_pb2.StockSplit = (await s.stub.CreateSplit(request, metadata=who)).split
    return made


async def holding(
    s: PortfolioService, who: Metadata, portfolio_id: str, symbol: str
) -> portfolio_pb2.Position:
    reply = await s.stub.ListPositions(
        portfolio_pb2.ListPositionsRequest(portfolio_id=portfolio_id, include_closed=True),
        metadata=who,
    )
    found: portfolio_pb2.Position = next(p for p in reply.positions if p.symbol == symbol)
    return found


async def splits_of(
    s: PortfolioService, who: Metadata, portfolio_id: str
) -> list[portfolio_pb2.StockSplit]:
    reply = await s.stub.ListSplits(
        portfolio_pb2.ListSplitsRequest(portfolio_id=portfolio_id), metadata=who
    )
    return list(reply.splits)


async def realized(
    s: PortfolioService, who: Metadata, portfolio_id: str, **fields: object
) -> portfolio_pb2.ListRealizedGainsResponse:
    request = portfolio_pb2.ListRealizedGainsRequest(portfolio_id=portfolio_id, **fields)  # type: ignore[arg-type]
    reply: portfolio_pb2.ListRealizedGainsResponse = await s.stub.ListRealizedGains(
        request, metadata=who
    )
    return reply


async def realized_gain(s: PortfolioService, who: Metadata, portfolio_id: str) -> str:
    return (await s.read(who, portfolio_id)).realized_gain


def targets(*pairs: tuple[str, str]) -> list[portfolio_pb2.AllocationTarget]:
    return [portfolio_pb2.AllocationTarget(symbol=s, weight=w) for s, w in pairs]


async def set_targets(
    s: PortfolioService, who: Metadata, portfolio_id: str, *pairs: tuple[str, str]
) -> portfolio_pb2.UpdatePortfolioTargetsResponse:
    request = portfolio_pb2.UpdatePortfolioTargetsRequest(
        portfolio_id=portfolio_id, targets=targets(*pairs)
    )
    reply: portfolio_pb2.UpdatePortfolioTargetsResponse = await s.stub.UpdatePortfolioTargets(
        request, metadata=who
    )
    return reply


async def rebalance(
    s: PortfolioService, who: Metadata, portfolio_id: str, **fields: object
) -> portfolio_pb2.GetRebalanceResponse:
    request = portfolio_pb2.GetRebalanceRequest(portfolio_id=portfolio_id, **fields)  # type: ignore[arg-type]
    reply: portfolio_pb2.GetRebalanceResponse = await s.stub.GetRebalance(request, metadata=who)
    return reply


def order(portfolio_id: str, **changes: object) -> portfolio_pb2.CreateOrderRequest:
    """Good until cancelled unless a test says otherwise: a DAY order expires at midnight UTC
    (the leader's sweep, every 5 s, or the crossing tick), which a test may run across: 100
    orders placed across it left room for a 101st and an expired one to cancel."""
    fields_: dict[str, object] = {
        "portfolio_id": portfolio_id,
        "symbol": "KO",
        "side": portfolio_pb2.TRADE_SIDE_BUY,
        "type": portfolio_pb2.ORDER_TYPE_LIMIT,
        "quantity": "10",
        "limit_price": "50",
        "time_in_force": portfolio_pb2.TIME_IN_FORCE_GTC,
        **changes,
    }
    return portfolio_pb2.CreateOrderRequest(**fields_)  # type: ignore[arg-type]


async def wait_for_status(
    s: PortfolioService, who: Metadata, order_id: str, status: int, within: float = 10.0
) -> portfolio_pb2.Order:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        reply = await s.stub.GetOrder(portfolio_pb2.GetOrderRequest(id=order_id), metadata=who)
        found: portfolio_pb2.Order = reply.order
        if found.status == status or loop.time() > deadline:
            return found
        await asyncio.sleep(0.05)
