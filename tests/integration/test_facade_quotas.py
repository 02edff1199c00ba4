"""Per-user caps and per-socket rates at the real facade, in front of real users, portfolio and
assistant services (only Anthropic is faked): WebSockets of every path counted together per
user, chat session joins per socket and per user, the message rate of each socket (RATE_LIMITED,
then a 1008 close), and /metrics and /services kept for admins in production. SQLite only."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from facade.health import create_admin_app
from services.runtime.config import RuntimeConfig
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import PASSWORD, StartStack
from tests.integration.conftest import Client, FacadeInFront
from tests.integration.socket_client import WAIT, Socket, authenticated


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def register(client: Client) -> tuple[str, list[str]]:
    """A new user through the facade: their access token and roles."""
    email = f"u{os.urandom(5).hex()}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ann"}
    )
    assert response.status == 201, await response.text()
    data = (await response.json())["data"]
    return data["tokens"]["accessToken"], list(data["user"]["roles"])


async def pong(ws: Socket) -> bool:
    await ws.send_json({"type": "ping"})
    return bool(await ws.receive_json(timeout=WAIT) == {"type": "pong"})


async def closed_with(ws: Socket) -> int | None:
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return ws.close_code


async def new_session(client: Client, token: str) -> str:
    response = await client.post(
        "/api/v1/chat/message",
        json={"message": "hello"},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = await response.json()
    assert response.status == 200, body
    return str(body["data"]["sessionId"])


async def join(ws: Socket, session_id: str) -> dict[str, Any]:
    await ws.send_json({"type": "join_session", "sessionId": session_id})
    answer: dict[str, Any] = await ws.receive_json(timeout=WAIT)
    return answer


# --- WebSockets per user --------------------------------------------------------------------


async def test_a_users_sockets_of_every_path_together_are_capped(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with (
        assistant_stack() as stack,
        facade_in_front(stack.addresses, WS_SOCKETS_PER_USER="2") as client,
    ):
        token, _ = await register(client)
        other, _ = await register(client)
        chat = await authenticated(client, "/ws/chat", token)
        prices = await authenticated(client, "/ws/portfolio", token)

        refused = await client.ws_connect(f"/ws/chat?token={token}")
        told = await refused.receive_json(timeout=WAIT)
        assert (told["type"], told["code"]) == ("error", "TOO_MANY_OPEN")
        assert "at most 2 sockets" in told["message"]
        assert await closed_with(refused) == 4429

        # The first two keep working; another user is not counted against this one.
        assert await pong(chat) and await pong(prices)
        assert await pong(await authenticated(client, "/ws/portfolio", other))
        # A closed socket gives its place back.
        await prices.close()
        for _ in range(50):
            again = await client.ws_connect(f"/ws/portfolio?token={token}")
            if (await again.receive_json(timeout=WAIT))["type"] == "auth_ok":
                break
            await closed_with(again)
        else:
            pytest.fail("a closed socket never gave its place back")
        assert await pong(again)


# --- message rate ---------------------------------------------------------------------------


async def test_a_socket_past_its_message_rate_is_refused_then_closed_with_1008(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    rate = {"WS_MESSAGE_RATE": "1", "WS_MESSAGE_BURST": "5", "WS_MESSAGE_STRIKES": "10"}
    async with assistant_stack() as stack, facade_in_front(stack.addresses, **rate) as client:
        token, _ = await register(client)
        flooding = await authenticated(client, "/ws/chat", token)
        calm = await authenticated(client, "/ws/chat", token)

        for _ in range(8):
            await flooding.send_json({"type": "ping"})
        answers = [await flooding.receive_json(timeout=WAIT) for _ in range(8)]
        assert [a["type"] for a in answers] == ["pong"] * 5 + ["error"] * 3
        assert {a.get("code") for a in answers[5:]} == {"RATE_LIMITED"}
        assert "at most 1 messages a second" in answers[5]["message"]

        # Persistent abuse (10 refusals within 10 s) closes the socket as a policy violation.
        for _ in range(7):
            await flooding.send_json({"type": "ping"})
        assert await closed_with(flooding) == 1008
        # Another socket of the same user has a bucket of its own.
        assert await pong(calm)


# --- chat session joins ---------------------------------------------------------------------


async def test_chat_joins_are_capped_per_socket_and_per_user(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    caps = {"CHAT_JOINS_PER_SOCKET": "2", "CHAT_JOINS_PER_USER": "3"}
    async with assistant_stack() as stack, facade_in_front(stack.addresses, **caps) as client:
        token, _ = await register(client)
        fake_anthropic.default = lambda body: Reply(text="Hi")
        one, two, three = [await new_session(client, token) for _ in range(3)]
        first = await authenticated(client, "/ws/chat", token)
        second = await authenticated(client, "/ws/chat", token)

        assert (await join(first, one))["type"] == "joined"
        assert (await join(first, two))["type"] == "joined"
        per_socket = await join(first, three)
        assert (per_socket["type"], per_socket["code"]) == ("error", "TOO_MANY_OPEN")
        assert "a socket joins at most 2 sessions" in per_socket["message"]

        assert (await join(second, three))["type"] == "joined"
        per_user = await join(second, one)
        assert (per_user["type"], per_user["code"]) == ("error", "TOO_MANY_OPEN")
        assert "at most 3 chat joins" in per_user["message"]

        # Leaving gives the place back; the joined sessions still relay.
        await first.send_json({"type": "leave_session", "sessionId": one})
        assert await first.receive_json(timeout=WAIT) == {"type": "left", "sessionId": one}
        assert (await join(second, one))["type"] == "joined"
        assert await pong(first) and await pong(second)


# --- operator routes ------------------------------------------------------------------------


async def test_metrics_and_services_need_an_admin_token_in_production(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with (
        assistant_stack() as stack,
        facade_in_front(stack.addresses, production=True) as client,
    ):
        admin, roles = await register(client)  # the first user registered is the admin
        assert "admin" in roles
        user, roles = await register(client)
        assert "admin" not in roles
        for path in ("/metrics", "/services"):
            anonymous = await client.get(path)
            body = await anonymous.json()
            assert anonymous.status == 401, body
            assert body["error"] == "UNAUTHENTICATED"
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"

            forbidden = await client.get(path, headers={"Authorization": f"Bearer {user}"})
            body = await forbidden.json()
            assert forbidden.status == 403, body
            assert body["error"] == "FORBIDDEN"

        metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
        assert metrics.status == 200
        assert "stockfolio_ws_connections" in await metrics.text()
        services = await client.get("/services", headers={"Authorization": f"Bearer {admin}"})
        assert services.status == 200
        names = {s["name"] for s in (await services.json())["data"]["services"]}
        assert names == {"users", "assistant", "terminal", "workspace", "portfolio"}
        # Health stays public: load balancers and probes carry no token.
        assert (await client.get("/health")).status == 200


async def test_metrics_and_services_stay_open_in_development(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert "# HELP" in await metrics.text()
        services = await client.get("/services")
        assert services.status == 200
        assert len((await services.json())["data"]["services"]) == 5


async def test_the_admin_port_serves_metrics_and_services_without_a_token(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with (
        assistant_stack() as stack,
        facade_in_front(stack.addresses, production=True) as client,
        TestClient(TestServer(create_admin_app(client.app))) as admin,
    ):
        assert (await client.get("/metrics")).status == 401
        metrics = await admin.get("/metrics")
        assert metrics.status == 200
        assert "stockfolio_ws_connections" in await metrics.text()
        services = await admin.get("/services")
        assert services.status == 200
        assert len((await services.json())["data"]["services"]) == 5
        assert (await admin.get("/health")).status == 200


def test_admin_ports_listen_on_loopback_unless_told_otherwise(
    make_config: Callable[..., RuntimeConfig],
) -> None:
    everywhere = "0.0.0.0"  # noqa: S104 (the service's own port, not the admin one)
    assert make_config("portfolio", STOCKFOLIO_HOST=everywhere).admin_host == "127.0.0.1"
    assert make_config("portfolio", ADMIN_HOST="10.0.0.7").admin_host == "10.0.0.7"
