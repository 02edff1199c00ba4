"""The web process in the started system: it names the facade as its API, and the facade lets
exactly its origin in (CORS preflights and WebSocket handshakes)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.system_harness import Account, System, request

ELSEWHERE = "http://127.0.0.1:1"


def test_the_app_is_told_the_facade_is_its_api(system: System) -> None:
    config = request("GET", f"{system.web_url}/config.json")
    assert config.status == 200
    assert config.body == {"apiUrl": system.facade_url}
    health = request("GET", f"{system.web_url}/healthz")
    assert health.status == 200
    assert health.body["status"] == "ok"


def test_the_csp_of_the_app_lets_it_reach_the_facade_over_http_and_websockets(
    system: System,
) -> None:
    policy = request("GET", f"{system.web_url}/healthz").headers["Content-Security-Policy"]
    ws_origin = system.facade_url.replace("http://", "ws://", 1)
    assert f"connect-src 'self' {system.facade_url} {ws_origin};" in policy


def preflight(system: System, origin: str) -> aiohttp.ClientResponse:
    async def send() -> aiohttp.ClientResponse:
        async with (
            aiohttp.ClientSession() as session,
            session.options(
                f"{system.facade_url}/api/v1/portfolios",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            ) as response,
        ):
            await response.read()
            return response

    return asyncio.run(send())


def test_a_preflight_from_the_app_is_allowed_and_from_another_origin_refused(
    system: System,
) -> None:
    ours = preflight(system, system.web_url)
    assert ours.status == 204
    assert ours.headers["Access-Control-Allow-Origin"] == system.web_url
    assert ours.headers["Access-Control-Allow-Credentials"] == "true"
    for origin in (ELSEWHERE, "http://localhost:4100"):
        theirs = preflight(system, origin)
        assert theirs.status == 403, origin
        assert "Access-Control-Allow-Origin" not in theirs.headers, origin


def open_socket(system: System, token: str, origin: str) -> dict[str, object]:
    """Opens /ws/portfolio with `origin`; the first message, or the refused handshake's status."""

    async def attempt() -> dict[str, object]:
        url = f"{system.facade_url.replace('http', 'ws', 1)}/ws/portfolio?token={token}"
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, origin=origin) as socket:
                    message = await socket.receive(timeout=10)
                    return dict(json.loads(message.data))
            except aiohttp.WSServerHandshakeError as refused:
                return {"refused": refused.status}

    return asyncio.run(attempt())


def test_sockets_open_from_the_app_and_are_refused_from_another_origin(
    system: System, account: Account
) -> None:
    assert open_socket(system, account.access_token, system.web_url) == {"type": "auth_ok"}
    assert open_socket(system, account.access_token, ELSEWHERE) == {"refused": 403}


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_the_app_or_the_page_saying_to_build_it_is_served(system: System, path: str) -> None:
    page = request("GET", f"{system.web_url}{path}")
    assert page.headers["Cache-Control"] in {"no-cache", "no-store"}
    if page.status == 503:
        assert "make web" in page.body
    else:
        assert page.status == 200
        assert '<div id="app">' in page.body
