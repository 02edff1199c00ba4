"""The real facade in front of the real users and portfolio services, for the tests of the
portfolio's routes and /ws/portfolio (fixtures: `client`, `open_facade`, `portfolio`; every test
sees them: tests/conftest.py names this module in `pytest_plugins`), and the helpers those tests
call: a new user, a portfolio, trades, a socket.

The simulated market moves every 50 ms and the calculator revalues every 0.3 s, so live
messages come quickly."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from facade.keys import UPSTREAMS
from services.portfolio.server import build as build_portfolio
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from tests.conftest import free_port, migrated_sqlite
from tests.integration.conftest import FacadeInFront
from tests.integration.socket_client import WAIT, Socket
from tests.waiting import until

Client = TestClient[web.Request, web.Application]
OpenFacade = Callable[..., contextlib.AbstractAsyncContextManager[Client]]

PASSWORD = "correct-horse-9"

# The simulated market moves every 50 ms; the calculator revalues every 0.3 s.
PORTFOLIO_SETTINGS = {
    "USE_MOCK_PRICES": "true",
    "MOCK_SEED": "7",
    "MOCK_UPDATE_INTERVAL": "50",
    "PORTFOLIO_REVALUE_INTERVAL": "0.3",
}


@contextlib.asynccontextmanager
async def portfolio_on(
    make_config: Callable[..., RuntimeConfig],
    users: str,
    database: str,
    port: int,
    **environment: str,
) -> AsyncIterator[None]:
    """A real portfolio service on `port`; keyword arguments are environment variables beside
    (or over) PORTFOLIO_SETTINGS."""
    settings = {**PORTFOLIO_SETTINGS, **environment}
    config = make_config(
        "portfolio", PORTFOLIO_DATABASE_URL=database, USERS_ADDRS=users, **settings
    )
    async with running(config, build_portfolio, port=port, grace=0):
        yield


@pytest.fixture
def replica_database(tmp_path: Path) -> str:
    """A second migrated portfolio database, for a replica a test starts and stops itself."""
    return migrated_sqlite("portfolio", tmp_path / "replica.db")


@pytest.fixture
def portfolio_port() -> int:
    return free_port()


@pytest.fixture
def portfolio_environment() -> dict[str, str]:
    """The portfolio service's environment beside PORTFOLIO_SETTINGS: none, unless a test
    module overrides this fixture."""
    return {}


@pytest.fixture
async def portfolio(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    portfolio_database_url: str,
    portfolio_port: int,
    portfolio_environment: dict[str, str],
) -> AsyncIterator[str]:
    """A real portfolio service; yields its address."""
    users = users_service.addresses["users"][0]
    async with portfolio_on(
        make_config, users, portfolio_database_url, portfolio_port, **portfolio_environment
    ):
        yield f"127.0.0.1:{portfolio_port}"


@pytest.fixture
def open_facade(
    facade_in_front: FacadeInFront, users_service: RuntimeConfig, portfolio: str
) -> OpenFacade:
    """The real facade in front of users and portfolio, its feed's upstreams live;
    keyword arguments are environment variables."""

    @contextlib.asynccontextmanager
    async def start(**environ: str) -> AsyncIterator[Client]:
        addresses = {"users": users_service.addresses["users"][0], "portfolio": portfolio}
        async with facade_in_front(addresses, **environ) as client:
            await until(lambda: client.app[UPSTREAMS].live == 2, "the upstream streams")
            yield client

    return start


@pytest.fixture
async def client(open_facade: OpenFacade) -> AsyncIterator[Client]:
    async with open_facade() as opened:
        yield opened


async def register(client: Client) -> tuple[str, str]:
    """A new user: their access token and id."""
    email = f"u{os.urandom(5).hex()}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ann"}
    )
    assert response.status == 201, await response.text()
    data = (await response.json())["data"]
    return data["tokens"]["accessToken"], data["user"]["id"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_portfolio(client: Client, token: str, name: str = "Main", **fields: str) -> str:
    """A portfolio of the user's (`fields` as the body names them, e.g. initialCash); its id."""
    body = {"name": name, **fields}
    response = await client.post("/api/v1/portfolios", json=body, headers=bearer(token))
    assert response.status == 201, await response.text()
    portfolio_id: str = (await response.json())["data"]["id"]
    return portfolio_id


async def buy(client: Client, token: str, portfolio_id: str, **fields: str) -> dict[str, Any]:
    body = {"portfolioId": portfolio_id, "symbol": "AAPL", "side": "buy", "quantity": "2"}
    body.update(fields)
    response = await client.post("/api/v1/trades", json=body, headers=bearer(token))
    assert response.status == 201, await response.text()
    trade: dict[str, Any] = (await response.json())["data"]
    return trade


async def record_trades(
    client: Client,
    token: str,
    portfolio_id: str,
    symbol: str,
    rows: Iterable[tuple[str, str, str, str, date | str]],
) -> list[dict[str, Any]]:
    """Trades of one symbol, each `(side, quantity, price, fees, day)`, made at 15:00 UTC; the
    trades as recorded."""
    recorded = []
    for side, quantity, price, fees, day in rows:
        at = day.isoformat() if isinstance(day, date) else day
        trade = await buy(
            client,
            token,
            portfolio_id,
            side=side,
            symbol=symbol,
            quantity=quantity,
            price=price,
            fees=fees,
            executedAt=f"{at}T15:00:00Z",
        )
        recorded.append(trade)
    return recorded


async def portfolio_with_trades(
    client: Client, name: str, symbol: str, rows: Iterable[tuple[str, str, str, str, date | str]]
) -> tuple[str, str]:
    """A new user's portfolio `name` with the trades of `symbol` in `rows` (as in
    `record_trades`): the user's token and the portfolio's id."""
    token, _ = await register(client)
    portfolio_id = await create_portfolio(client, token, name)
    await record_trades(client, token, portfolio_id, symbol, rows)
    return token, portfolio_id


async def portfolio_with_buys(
    client: Client, token: str, name: str, cash: str, buys: Iterable[tuple[str, str, str]]
) -> str:
    """A portfolio of the user's given `cash`, then each `(symbol, quantity, price)` bought;
    its id."""
    portfolio_id = await create_portfolio(client, token, name, initialCash=cash)
    for symbol, quantity, price in buys:
        await buy(client, token, portfolio_id, symbol=symbol, quantity=quantity, price=price)
    return portfolio_id


async def connect(client: Client, token: str | None = None, **kwargs: Any) -> Socket:
    path = "/ws/portfolio" if token is None else f"/ws/portfolio?token={token}"
    ws: Socket = await client.ws_connect(path, **kwargs)
    return ws


async def authenticated(client: Client, token: str) -> Socket:
    ws = await connect(client, token)
    assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
    return ws


class AnnsSell(NamedTuple):
    """Ann's portfolio with her buy of 10 AAPL on 2024-03-01 and a sell of some on 2024-06-03,
    her token and socket, and those of Bob, who owns none of it."""

    ann: str
    bob: str
    portfolio_id: str
    bought: dict[str, Any]
    sold: dict[str, Any]
    anns: Socket
    bobs: Socket


async def anns_sell(client: Client, sold: str) -> AnnsSell:
    """Ann and Bob registered, Ann's buy and her sell of `sold` shares recorded, both their
    sockets open (the caller closes them)."""
    ann, _ = await register(client)
    bob, _ = await register(client)
    portfolio_id = await create_portfolio(client, ann)
    rows = (("buy", "10", "100", "0", "2024-03-01"), ("sell", sold, "120", "0", "2024-06-03"))
    bought, sale = await record_trades(client, ann, portfolio_id, "AAPL", rows)
    anns, bobs = await authenticated(client, ann), await authenticated(client, bob)
    return AnnsSell(ann, bob, portfolio_id, bought, sale, anns, bobs)


async def until_pong(ws: Socket) -> list[dict[str, Any]]:
    """Ping, and every message before the pong: what the socket got up to now."""
    await ws.send_json({"type": "ping"})
    before = []
    while (message := await ws.receive_json(timeout=WAIT))["type"] != "pong":
        before.append(message)
    return before


async def closed_with(ws: Socket) -> int | None:
    """Read to the end; the close code the server sent."""
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return ws.close_code
