"""Calls to the real facade as a registered user, for integration tests that drive it through
aiohttp's test client."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]
PASSWORD = "correct-horse-9"


@dataclass
class User:
    token: str
    id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(client: Client) -> User:
    email = f"u{os.urandom(5).hex()}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ann"}
    )
    assert response.status == 201, await response.text()
    data = (await response.json())["data"]
    return User(data["tokens"]["accessToken"], data["user"]["id"])


async def call(
    client: Client, method: str, path: str, user: User, expect: int = 200, **kwargs: Any
) -> Any:
    response = await client.request(method, path, headers=user.headers, **kwargs)
    body = await response.json()
    assert response.status == expect, body
    return body
