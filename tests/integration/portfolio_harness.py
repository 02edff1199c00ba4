"""Fixtures for the portfolio service's integration tests (in tests/conftest.py's
`pytest_plugins`): a migrated portfolio database of its own beside the users one, a real users
service for tokens, and a real portfolio server on port 0 over the simulated market, held still
unless asked; `statements`, the SQL a test sends to it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Connection, Engine, make_url
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.portfolio.orm import portfolios
from services.portfolio.server import build as build_portfolio
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database, normalize_url
from services.runtime.server import running
from tests.conftest import facade_credentials, service_database

PASSWORD = "correct-horse-9"
Metadata = tuple[tuple[str, str], ...]
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
            "MOCK_SEED": "7",
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
