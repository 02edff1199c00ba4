"""`Idempotency-Key` on POST /api/v1/terminal/terminals/create, through the real facade, users,
workspace and terminal services: a double click on "New terminal" (or a retry after a lost
answer) opened a second shell, and a user's shells are few (TERMINAL_MAX_SESSIONS_PER_USER).
Now a repeat of the same request gets the first shell, as every other create does."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.rest_client import User, call, register
from tests.integration.terminal_harness import (
    Client,
    System,
)

pytestmark = SQLITE_ONLY

CREATE = "/api/v1/terminal/terminals/create"


async def create(
    client: Client, user: User, key: str, expect: int = 201, **fields: object
) -> dict[str, Any]:
    headers = {**user.headers, "Idempotency-Key": key}
    response = await client.post(CREATE, json=fields, headers=headers)
    body: dict[str, Any] = await response.json()
    assert response.status == expect, body
    return body


async def shells_of(client: Client, user: User) -> list[str]:
    listed = await call(client, "GET", "/api/v1/terminal/terminals", user)
    return sorted(t["sessionId"] for t in listed["data"])


async def test_a_repeated_create_gets_the_first_shell(system: System) -> None:
    client = system.client
    user = await register(client)
    key = secrets.token_hex(8)
    first = (await create(client, user, key, cols=100))["data"]
    again = (await create(client, user, key, cols=100))["data"]
    assert again == first
    assert await shells_of(client, user) == [first["sessionId"]]
    # Another key is another shell.
    other = (await create(client, user, secrets.token_hex(8), cols=100))["data"]
    assert other["sessionId"] != first["sessionId"]
    assert await shells_of(client, user) == sorted([first["sessionId"], other["sessionId"]])


async def test_two_creates_at_once_with_one_key_open_one_shell(system: System) -> None:
    client = system.client
    user = await register(client)
    key = secrets.token_hex(8)
    answers = await asyncio.gather(*(create(client, user, key) for _ in range(4)))
    ids = {answer["data"]["sessionId"] for answer in answers}
    assert len(ids) == 1
    assert await shells_of(client, user) == sorted(ids)


async def test_a_key_reused_for_another_request_is_refused(system: System) -> None:
    client = system.client
    user = await register(client)
    key = secrets.token_hex(8)
    first = (await create(client, user, key, cols=100))["data"]
    refused = await create(client, user, key, expect=422, cols=120)
    assert refused["success"] is False
    assert refused["error"] == "IDEMPOTENCY_KEY_REUSED", refused
    assert "already used with a different request" in refused["message"]
    assert await shells_of(client, user) == [first["sessionId"]]


async def test_keys_are_each_user_s_own(system: System) -> None:
    client = system.client
    ann, bob = await register(client), await register(client)
    key = secrets.token_hex(8)
    mine = (await create(client, ann, key))["data"]
    theirs = (await create(client, bob, key))["data"]
    assert mine["sessionId"] != theirs["sessionId"]
    assert theirs["userId"] == bob.id
    assert await shells_of(client, bob) == [theirs["sessionId"]]
