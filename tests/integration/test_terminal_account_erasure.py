"""A deleted account's terminals: its shells end soon after (their processes gone), and its
ended sessions go with their scrollback, by the terminal service's follower of the users
service's deletions, not only at the next logout recheck (here an hour away); another user's
shell runs on. The terminal keeps no database: SQLite only (the users service's)."""

from __future__ import annotations

from typing import Any

from tests.conftest import SQLITE_ONLY
from tests.integration.rest_client import PASSWORD, User, call, register
from tests.integration.terminal_harness import (
    Client,
    Start,
    at_its_prompt,
    create,
    gone,
    output_until,
    write,
)
from tests.waiting import until, until_async

pytestmark = SQLITE_ONLY


async def every_session(client: Client, admin: User) -> list[dict[str, Any]]:
    """Every user's sessions, as an admin lists them."""
    body = await call(client, "GET", "/api/v1/terminal/terminals?allUsers=true&limit=100", admin)
    sessions: list[dict[str, Any]] = body["data"]
    return sessions


async def test_a_deleted_accounts_shells_end_and_its_sessions_go(start_system: Start) -> None:
    async with start_system(
        ACCOUNT_PURGE_INTERVAL="0.1", TERMINAL_SESSION_RECHECK="3600"
    ) as system:
        client = system.client
        admin = await register(client)  # the first account: the admin
        ann, running = await at_its_prompt(client)
        ended = (await create(client, ann))["sessionId"]
        await output_until(client, ann, ended, r"\$ $")
        await write(client, ann, ended, "exit\n")
        bob, bobs = await at_its_prompt(client)
        listed = {s["sessionId"]: s for s in await every_session(client, admin)}
        assert {running, ended, bobs} <= set(listed)
        pid = listed[running]["pid"]
        assert pid > 0 and not gone(pid)

        async def exited() -> bool:
            found = {s["sessionId"]: s for s in await every_session(client, admin)}
            return bool(found[ended]["state"] != "running")

        await until_async(exited, "the exited shell seen as such")
        await call(
            client,
            "DELETE",
            f"/api/v1/users/{ann.id}",
            ann,
            json={"currentPassword": PASSWORD},
        )

        async def anns_gone() -> bool:
            found = await every_session(client, admin)
            return not {s["sessionId"] for s in found} & {running, ended}

        await until_async(anns_gone, "the deleted account's sessions gone", within=20)
        await until(lambda: gone(pid), "the deleted account's shell process")
        found = {s["sessionId"]: s for s in await every_session(client, admin)}
        assert found[bobs]["state"] == "running"
        await write(client, bob, bobs, "echo still-here\n")
        await output_until(client, bob, bobs, "still-here")
