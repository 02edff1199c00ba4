"""Fixtures for the assistant's integration tests: real users, portfolio and assistant gRPC
servers on port 0 (each with its own migrated database, on SQLite and PostgreSQL), the real
facade in front of them when a test asks, and a local fake Anthropic API (tests/fakes) that
the official SDK talks to. Nothing of ours is mocked.

Every test sees the fixtures: tests/conftest.py names this module in `pytest_plugins`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import grpc
import pytest
from stockfolio.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.assistant.repository import Chats
from services.assistant.server import build as build_assistant
from services.portfolio.server import build as build_portfolio
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.server import Running, running
from tests.conftest import service_database
from tests.fakes.anthropic import FakeAnthropic
from tests.utc_days import midnight_of

PASSWORD = "correct-horse-9"
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def stack_databases(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Migrated portfolio and assistant databases (migrations run sync: not on a loop)."""
    with (
        service_database("portfolio", database_url, tmp_path) as portfolio,
        service_database("assistant", database_url, tmp_path) as assistant,
    ):
        yield portfolio, assistant


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


def token_of(who: Metadata) -> str:
    """The access token `who`'s bearer metadata carries."""
    return who[0][1].removeprefix("Bearer ")


async def tokens_counted_since(database_url: str, user_id: str, first: date) -> int:
    """The tokens the user's ledger counts from the UTC day `first` on: the day the test began
    (a user of the test's own spent nothing before; midnight may pass while it runs)."""
    db = Database(database_url)
    try:
        return await Chats(db).tokens_since(user_id, midnight_of(first))
    finally:
        await db.close()


@dataclass
class AssistantStack:
    """Users, portfolio and assistant running; what a test needs to drive them."""

    assistant: assistant_pb2_grpc.AssistantServiceStub
    portfolio: portfolio_pb2_grpc.PortfolioServiceStub
    users: users_pb2_grpc.UsersServiceStub
    addresses: dict[str, str]
    database_url: str
    running: Running

    async def account(self) -> tuple[Metadata, str]:
        """Register a new user: their bearer metadata and user id."""
        reply = await self.users.Register(
            users_pb2.RegisterRequest(
                email=f"u{uuid.uuid4().hex[:10]}@example.com", password=PASSWORD
            )
        )
        return (bearer(reply.tokens.access_token),), reply.user.id

    async def user(self) -> Metadata:
        return (await self.account())[0]

    async def token(self) -> str:
        return token_of(await self.user())

    def send(
        self, who: Metadata, message: str, **fields: str
    ) -> Awaitable[assistant_pb2.SendMessageResponse]:
        """`who` sends `message` (to a session, with a model: `fields`); the call, to await."""
        request = assistant_pb2.SendMessageRequest(message=message, **fields)
        call: Awaitable[assistant_pb2.SendMessageResponse] = self.assistant.SendMessage(
            request, metadata=who
        )
        return call

    async def portfolio_with(
        self, who: Metadata, name: str, buys: list[tuple[str, str, str]], cash: str = "10000"
    ) -> portfolio_pb2.Portfolio:
        """A paper portfolio holding `buys` (symbol, quantity, price), valued now."""
        created = await self.portfolio.CreatePortfolio(
            portfolio_pb2.CreatePortfolioRequest(
                name=name,
                kind=portfolio_pb2.PORTFOLIO_KIND_TRACKING,
                initial_cash=cash,
            ),
            metadata=who,
        )
        for symbol, quantity, price in buys:
            await self.portfolio.CreateTrade(
                portfolio_pb2.CreateTradeRequest(
                    portfolio_id=created.portfolio.id,
                    side=portfolio_pb2.TRADE_SIDE_BUY,
                    symbol=symbol,
                    quantity=quantity,
                    price=price,
                ),
                metadata=who,
            )
        reply = await self.portfolio.GetPortfolio(
            portfolio_pb2.GetPortfolioRequest(id=created.portfolio.id), metadata=who
        )
        portfolio: portfolio_pb2.Portfolio = reply.portfolio
        return portfolio


StartStack = Callable[..., contextlib.AbstractAsyncContextManager[AssistantStack]]


@pytest.fixture
def assistant_stack(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    stack_databases: tuple[str, str],
    fake_anthropic: FakeAnthropic,
) -> StartStack:
    """`assistant_stack(**env)` runs portfolio and assistant beside the users service; the
    assistant talks to the fake Anthropic API unless `CLAUDE_API_KEY=""` (offline). Keyword
    arguments are the assistant's environment variables."""

    @contextlib.asynccontextmanager
    async def start(**environ: str) -> AsyncIterator[AssistantStack]:
        users = users_service.addresses["users"][0]
        portfolio_db, assistant_db = stack_databases
        portfolio_config = make_config(
            "portfolio",
            PORTFOLIO_DATABASE_URL=portfolio_db,
            USERS_ADDRS=users,
            USE_MOCK_PRICES="true",
            MOCK_SEED="7",
            MOCK_UPDATE_INTERVAL="3600000",
            PORTFOLIO_REVALUE_INTERVAL="3600",
        )
        async with running(portfolio_config, build_portfolio, port=0, grace=0) as portfolio:
            settings = {
                "ASSISTANT_DATABASE_URL": assistant_db,
                "USERS_ADDRS": users,
                "PORTFOLIO_ADDRS": f"127.0.0.1:{portfolio.port}",
                "CLAUDE_API_KEY": fake_anthropic.api_key,
                "ANTHROPIC_BASE_URL": fake_anthropic.url,
                "CLAUDE_MAX_RETRIES": "0",
                **environ,
            }
            config = make_config("assistant", **settings)
            async with (
                running(config, build_assistant, port=0, grace=0) as assistant,
                grpc.aio.insecure_channel(f"127.0.0.1:{assistant.port}") as channel,
                grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as to_portfolio,
                grpc.aio.insecure_channel(users) as to_users,
            ):
                yield AssistantStack(
                    assistant_pb2_grpc.AssistantServiceStub(channel),
                    portfolio_pb2_grpc.PortfolioServiceStub(to_portfolio),
                    users_pb2_grpc.UsersServiceStub(to_users),
                    {
                        "users": users,
                        "portfolio": f"127.0.0.1:{portfolio.port}",
                        "assistant": f"127.0.0.1:{assistant.port}",
                    },
                    assistant_db,
                    assistant,
                )

    return start
