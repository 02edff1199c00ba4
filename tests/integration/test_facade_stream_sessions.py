"""Streamed responses end with their session, as WebSockets do: a file watch over Server-Sent
Events or NDJSON, open through the real facade in front of the real users and workspace
services, ends with the format's error record within WS_SESSION_RECHECK of a logout; other
users' watches go on. A user holds at most FILE_WATCHES_PER_USER watches at once. SQLite only:
the storage engine plays no part here."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.workspace_harness import (
    Client,
    OpenFacade,
    User,
    WorkspaceService,
    bearer,
    shell,
)

RECHECK = 0.2
# The session is asked again every RECHECK seconds; the validation round trip and the write
# of the last record take the rest.
ENDS_WITHIN = RECHECK + 1.5
WAIT = 10.0


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def new_project(facade: Client, who: User) -> str:
    response = await facade.post(
        "/api/v1/workspace/projects",
        json={"name": "site", "template": "python"},
        headers=bearer(who),
    )
    body = await response.json()
    assert response.status == 201, body
    return str(body["data"]["id"])


async def watch(facade: Client, who: User, project: str, *, sse: bool) -> aiohttp.ClientResponse:
    headers = {**bearer(who), "Accept": "text/event-stream" if sse else "application/x-ndjson"}
    response = await facade.get(f"/api/v1/files:watch?project={project}", headers=headers)
    assert response.status == 200, await response.text()
    return response


async def log_out(facade: Client, who: User) -> None:
    response = await facade.post("/api/v1/auth/logout", json={}, headers=bearer(who))
    assert response.status == 200, await response.text()


async def rest_of(response: aiohttp.ClientResponse) -> bytes:
    """Everything the stream still sends, up to its end."""
    return await asyncio.wait_for(response.content.read(), WAIT)


async def next_sse_message(response: aiohttp.ClientResponse) -> Any:
    """The data of the next `message` event (heartbeats skipped)."""
    async with asyncio.timeout(WAIT):
        while True:
            line = await response.content.readline()
            if line.startswith(b"data: "):
                return json.loads(line.removeprefix(b"data: "))


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


async def test_a_logout_ends_a_server_sent_events_watch_with_an_error_event(
    workspace: WorkspaceService, open_workspace_facade: OpenFacade
) -> None:
    async with open_workspace_facade(WS_SESSION_RECHECK=str(RECHECK)) as facade:
        ada, bob = await workspace.user(), await workspace.user()
        project, bobs = await new_project(facade, ada), await new_project(facade, bob)
        watching = await watch(facade, ada, project, sse=True)
        bystander = await watch(facade, bob, bobs, sse=True)

        await log_out(facade, ada)
        logged_out = time.monotonic()
        body = await rest_of(watching)
        took = time.monotonic() - logged_out

        assert took < ENDS_WITHIN, f"the watch ended {took:.2f} s after the logout"
        assert sse_events(body)[-1] == (
            "error",
            {"error": "SESSION_REVOKED", "message": sse_events(body)[-1][1]["message"]},
        )
        # Bob's watch still reports his changes.
        await shell(workspace.root / bob.id / "site", "echo x > after.py")
        data = await next_sse_message(bystander)
        assert (data["kind"], data["path"]) == ("created", "after.py")
        bystander.close()


async def test_a_logout_ends_an_ndjson_watch_with_an_error_line(
    workspace: WorkspaceService, open_workspace_facade: OpenFacade
) -> None:
    async with open_workspace_facade(WS_SESSION_RECHECK=str(RECHECK)) as facade:
        ada = await workspace.user()
        watching = await watch(facade, ada, await new_project(facade, ada), sse=False)
        assert watching.headers["Content-Type"].startswith("application/x-ndjson")

        await log_out(facade, ada)
        logged_out = time.monotonic()
        body = await rest_of(watching)
        took = time.monotonic() - logged_out

        assert took < ENDS_WITHIN, f"the watch ended {took:.2f} s after the logout"
        last = json.loads(body.splitlines()[-1])
        assert last["error"] == "SESSION_REVOKED"
        assert last["message"]


async def test_a_user_holds_at_most_the_configured_number_of_watches(
    workspace: WorkspaceService, open_workspace_facade: OpenFacade
) -> None:
    async with open_workspace_facade(FILE_WATCHES_PER_USER="2") as facade:
        ada, bob = await workspace.user(), await workspace.user()
        project = await new_project(facade, ada)
        first = await watch(facade, ada, project, sse=True)
        second = await watch(facade, ada, project, sse=False)

        refused = await facade.get(
            f"/api/v1/files:watch?project={project}",
            headers={**bearer(ada), "Accept": "text/event-stream"},
        )
        body = await refused.json()
        assert refused.status == 429
        assert body["success"] is False
        assert body["error"] == "TOO_MANY_OPEN"
        assert body["details"] == {"kind": "watches", "open": "2", "limit": "2"}
        assert "at most 2 watches" in body["message"]
        # Another user's watch is not counted against Ada.
        bobs = await watch(facade, bob, await new_project(facade, bob), sse=True)

        # The first two keep working.
        await shell(workspace.root / ada.id / "site", "echo x > kept.py")
        assert (await next_sse_message(first))["path"] == "kept.py"
        line = json.loads(await asyncio.wait_for(second.content.readline(), WAIT))
        assert (line["kind"], line["path"]) == ("created", "kept.py")

        # Closing one gives its place back.
        first.close()
        third = None
        deadline = time.monotonic() + WAIT
        while third is None and time.monotonic() < deadline:
            again = await facade.get(f"/api/v1/files:watch?project={project}", headers=bearer(ada))
            if again.status == 200:
                third = again
            else:
                assert again.status == 429
                again.close()
                await asyncio.sleep(0.05)
        assert third is not None, "a closed watch never gave its place back"
        for response in (second, third, bobs):
            response.close()
