"""Terminal limits through the real facade: a recorded input line that cannot grow the service,
passphrases that are not kept, `?outputBytes=` that never starts inside a character, a paste
larger than a socket message refused on a socket that stays open, and shells that outlive a
logout on one device while their owner is still logged in on another, but not a logout
everywhere because an older login's token has expired.

Runs the real users, workspace and terminal services behind the real facade, as
test_facade_terminal.py does (its fixtures are reused)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import jwt

from services.runtime.config import RuntimeConfig
from services.runtime.context import Identity
from services.runtime.sessions import remote_sessions
from services.terminal.logins import Logins
from services.terminal.manager import TerminalManager
from services.terminal.server import owner_still_logged_in
from tests.conftest import SQLITE_ONLY, users_codec
from tests.integration.rest_client import PASSWORD, User, call, register
from tests.integration.terminal_harness import (
    WAIT,
    Client,
    Start,
    System,
    at_its_prompt,
    create,
    gone,
    joined,
    output_until,
    receive,
    until_gone,
    write,
)

pytestmark = SQLITE_ONLY


async def test_history_output_bytes_never_starts_inside_a_character(
    system: System,
) -> None:
    """`?outputBytes=N` took the last N bytes of the scrollback and decoded them with
    errors='replace': when byte N-from-the-end fell inside a multi-byte character the answer
    started with U+FFFD (garbage the shell never printed), and, U+FFFD being three bytes, the
    text was longer than the N bytes asked for."""
    client = system.client
    ann = await register(client)
    sid = (await create(client, ann))["sessionId"]
    await write(
        client, ann, sid, "printf 'X%.0s' 1; printf 'é%.0s' $(seq 20); echo; echo done-$((6*7))\n"
    )
    output = await output_until(client, ann, sid, r"done-42\r\n(?s:.*)\$ $")
    assert "é" * 20 in output
    # One byte more than what follows the last é: its second byte, then the rest.
    raw = output.encode()
    n = len(raw) - raw.rindex("é".encode()) - 1
    body = await call(
        client, "GET", f"/api/v1/terminal/terminals/{sid}/history?outputBytes={n}", ann
    )
    recent = body["data"]["recentOutput"]
    assert recent == output[-(n - 1) :], repr(recent)
    assert recent.startswith("\r\ndone-42\r\n")


async def test_typing_without_a_newline_does_not_grow_the_service_without_bound(
    system: System,
) -> None:
    """Every write is also recorded for the history's `commands`: its characters were appended,
    one Python str per character, to the line being typed, which only a newline, ^C or ^U
    cleared. A user whose program reads no line (`cat` waiting for one that never ends) and
    who writes CJK text with no newline made the service hold ~80 bytes per character,
    ~1.7 MB per 64 KiB write, for good: a few thousand writes took the service (every user's
    shells) down. The recorded line is bounded now, as a tty's own line (4096)."""
    client = system.client
    ann = await register(client)
    sid = (await create(client, ann))["sessionId"]
    await write(client, ann, sid, "cat > /dev/null\n")
    await asyncio.sleep(0.5)
    overview = "/api/v1/terminal/terminals/stats/overview"
    before = int((await call(client, "GET", overview, ann))["data"]["memoryBytes"])
    chunk = "中" * 21_000  # 63 KB of UTF-8, under the 64 KiB write limit
    path = f"/api/v1/terminal/terminals/{sid}/write"

    async def refused() -> bool:
        response = await client.post(path, json={"data": chunk}, headers=ann.headers)
        return response.status == 429

    for _ in range(150):
        while await refused():  # noqa: ASYNC110 - the shell reads it all, a moment later
            await asyncio.sleep(0.05)
    after = int((await call(client, "GET", overview, ann))["data"]["memoryBytes"])
    grown = after - before
    # 150 writes are 9.5 MB of input the tty threw away; the service kept far more.
    assert grown < 32 * 1024 * 1024, f"the service grew by {grown / 2**20:.0f} MiB"
    await write(client, ann, sid, "\n\x04echo done-$((6*7))\n")
    await output_until(client, ann, sid, r"done-42")
    history = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}/history", ann)
    assert [len(c) for c in history["data"]["commands"]] == [15, 4096, 18]


async def test_input_typed_at_a_no_echo_prompt_is_not_kept_as_a_command(
    system: System,
) -> None:
    """The history route's `commands` were every line written to the PTY, whatever read it: a
    passphrase typed at a prompt that turned echo off (`read -s`, `gpg -c`, `ssh-keygen`,
    `su`) was kept among the last 200 and served by GET .../history for as long as the session
    lived, although the shell never showed it. The terminal's own modes (tcgetattr on the
    master) now tell a password prompt from a command line."""
    client = system.client
    ann, sid = await at_its_prompt(client)
    await write(client, ann, sid, "read -r -s -p 'passphrase: ' P; echo; echo got-${#P}\n")
    await output_until(client, ann, sid, r"passphrase: $")
    await write(client, ann, sid, "hunter2-secret\n")
    await output_until(client, ann, sid, r"got-14")
    history = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}/history", ann)
    assert history["data"]["commands"] == ["read -r -s -p 'passphrase: ' P; echo; echo got-${#P}"]


async def test_a_pin_typed_at_a_silent_single_key_read_is_not_kept_in_the_history(
    system: System,
) -> None:
    """`read -s -n 4` turns echo and canonical mode off in the shell's own process group, as
    readline does at the prompt: the PIN typed there was kept as the start of the line being
    typed, and GET .../history served it joined to the next command ('4321echo after-...')."""
    client = system.client
    ann, sid = await at_its_prompt(client)
    await write(client, ann, sid, "read -r -s -n 4 -p 'PIN: ' P; echo; echo got-${#P}\r")
    await output_until(client, ann, sid, r"PIN: $")
    await write(client, ann, sid, "4321")
    await output_until(client, ann, sid, r"got-4\r\n.*\$ $")
    await write(client, ann, sid, "echo after-$((6*7))\r")
    await output_until(client, ann, sid, r"after-42")
    history = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}/history", ann)
    assert history["data"]["commands"] == [
        "read -r -s -n 4 -p 'PIN: ' P; echo; echo got-${#P}",
        "echo after-$((6*7))",
    ]


async def test_a_paste_larger_than_a_socket_message_is_refused_not_the_socket_closed(
    system: System,
) -> None:
    """README, /ws/terminal: a refused frame is answered with an `error` (PAYLOAD_TOO_LARGE is
    listed) and 'the socket stays open'. A paste sent as one `data` message over 64 KiB
    exceeded the facade's MAX_MESSAGE_BYTES, which aiohttp enforced by closing the socket with
    1009: the paste was lost, the tab showed 'reconnecting', and no error said why. Now it is
    refused with an error, the socket and the shell go on, and a paste in pieces arrives."""
    client = system.client
    ann, sid, ws = await joined(client)
    await ws.send_json({"type": "data", "data": "x" * 70_000})
    while True:
        message = await ws.receive(timeout=WAIT)
        assert message.type == aiohttp.WSMsgType.TEXT, (message.type.name, message.data)
        if message.json()["type"] == "error":
            break
    assert message.json()["code"] == "PAYLOAD_TOO_LARGE", message.json()
    # The socket goes on, and so does its attachment.
    await ws.send_json({"type": "ping"})
    await receive(ws, "pong")
    await ws.send_json({"type": "data", "data": "echo after-$((6*7))\r"})
    await output_until(client, ann, sid, r"after-42")
    await ws.close()


async def test_logging_out_one_device_does_not_end_the_shells_of_a_user_still_logged_in(
    start_system: Start,
) -> None:
    """README: the terminal service checks every TERMINAL_SESSION_RECHECK that each session's
    owner is still logged in ('a logout everywhere ends their shells'). It asked instead
    whether the one login whose token it last kept (the freshest) was live: signing out of the
    laptop that last typed into the shell killed it (and every process in it: a build, a long
    job) while its owner was still signed in, and using it, on the desktop. Now it asks about
    every login the owner was seen with, and ends the shell once none is live."""
    async with start_system(TERMINAL_SESSION_RECHECK="0.2", SESSION_CHECK_TTL="0.1") as started:
        client = started.client
        email = f"u{os.urandom(5).hex()}@example.com"
        desktop = await _registered(client, email)
        sid = (await create(client, desktop))["sessionId"]
        await asyncio.sleep(1.1)  # the laptop's token expires a second later than the desktop's
        laptop = await _signed_in(
            await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        )
        listed = await call(client, "GET", "/api/v1/terminal/terminals", laptop)
        assert [t["sessionId"] for t in listed["data"]] == [sid]
        await write(client, laptop, sid, "echo started-$((6*7))\n")
        await output_until(client, laptop, sid, r"started-42")
        pid = (await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", laptop))["data"]
        await _log_out(client, laptop)
        await asyncio.sleep(2.0)  # ten rechecks
        # Still signed in on the desktop: the shell is theirs and still runs.
        got = await call(client, "GET", f"/api/v1/terminal/terminals/{sid}", desktop)
        assert got["data"]["state"] == "running", got
        assert not gone(pid["pid"])
        # Signed out there too: no login left, and the shell ends at a recheck.
        await _log_out(client, desktop)
        signed_out = time.monotonic()
        await until_gone(pid["pid"], within=5.0)
        assert time.monotonic() - signed_out < 5.0


async def test_a_logout_everywhere_ends_the_shells_though_an_older_login_s_token_has_expired(
    system: System,
    users_service: RuntimeConfig,
    tmp_path: Path,
) -> None:
    """Ann opened her terminal on her phone an hour ago (the token the terminal service last
    saw of that login has expired since) and works on her laptop now. The recheck asked about
    every login, and one whose token could no longer ask answered 'cannot tell, keep it': after
    a logout everywhere her shells lived on (without Redis's announcement, for good). A login
    that cannot be asked about was dropped, and the logins that can be asked decided; now an
    expired token is asked about too (see the next test)."""
    client = system.client
    email = f"u{os.urandom(5).hex()}@example.com"
    phone = await _registered(client, email)
    laptop = await _signed_in(
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    )
    logins = Logins(lambda owner: True)
    an_hour_ago = datetime.now(UTC) - timedelta(minutes=45)
    logins.saw(dataclasses.replace(_identity_of(phone), expires_at=an_hour_ago))
    logins.saw(_identity_of(laptop))
    async with _a_shell_rechecked(users_service, tmp_path, logins, phone.id) as still_allowed:
        assert await still_allowed() is True  # logged in on the laptop: the shell stays
        await call(client, "POST", "/api/v1/auth/logout", laptop, json={"allSessions": True})
        await asyncio.sleep(users_service.session_check_ttl + 0.1)  # the laptop's answer ages
        assert await still_allowed() is False
        assert logins.of(phone.id) == []  # neither login is asked about again


async def test_a_logout_everywhere_ends_the_shell_of_a_login_whose_only_token_expired(
    system: System,
    users_service: RuntimeConfig,
    tmp_path: Path,
) -> None:
    """Ann started a shell on her phone an hour ago and has not touched it since: the only
    token the terminal service holds of her has expired. The recheck could not ask with it
    ('cannot tell, keep it'), so her shell outlived her logout everywhere (without Redis's
    announcement, for good). Now it asks with the expired token (users' CheckSession): the
    shell stays while she is logged in, and ends once she has logged out everywhere."""
    client = system.client
    email = f"u{os.urandom(5).hex()}@example.com"
    phone = await _registered(client, email)
    seen = _identity_of(phone)
    expired, expires_at = users_codec(access_ttl=-3600).issue_access(
        user_id=seen.user_id, session_id=seen.session_id, email=seen.email, roles=["user"]
    )
    logins = Logins(lambda owner: True)
    logins.saw(dataclasses.replace(seen, token=expired, expires_at=expires_at))
    async with _a_shell_rechecked(users_service, tmp_path, logins, phone.id) as still_allowed:
        assert await still_allowed() is True  # logged in: the shell stays
        assert [login.token for login in logins.of(phone.id)] == [expired]
        await call(client, "POST", "/api/v1/auth/logout", phone, json={"allSessions": True})
        await asyncio.sleep(users_service.session_check_ttl + 0.1)  # the answer ages
        assert await still_allowed() is False
        assert logins.of(phone.id) == []


def _identity_of(user: User) -> Identity:
    """The identity the terminal service reads from the user's access token."""
    claims = jwt.decode(user.token, options={"verify_signature": False})
    return Identity(
        user_id=claims["sub"],
        session_id=claims["sid"],
        email=claims.get("email", ""),
        roles=frozenset(claims.get("roles", [])),
        token=user.token,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


@contextlib.asynccontextmanager
async def _a_shell_rechecked(
    users_service: RuntimeConfig, tmp_path: Path, logins: Logins, owner: str
) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
    """A shell of `owner`'s, in a manager of its own; yields the terminal service's recheck of
    it (whether it stays), asking the real users service about the `logins` seen."""
    async with (
        contextlib.AsyncExitStack() as resources,
        TerminalManager(tmp_path, shells=("/bin/sh",), grace=0.5) as manager,
    ):
        still_allowed = owner_still_logged_in(
            await remote_sessions(users_service, resources), logins
        )
        shell = await manager.create(owner, None, 80, 24, "/bin/sh")
        yield lambda: still_allowed(shell)


async def _registered(client: Client, email: str) -> User:
    return await _signed_in(
        await client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ann"}
        )
    )


async def _signed_in(response: aiohttp.ClientResponse) -> User:
    assert response.status in (200, 201), await response.text()
    data = (await response.json())["data"]
    return User(data["tokens"]["accessToken"], data["user"]["id"])


async def _log_out(client: Client, user: User) -> None:
    response = await client.post("/api/v1/auth/logout", json={}, headers=user.headers)
    assert response.status == 200, await response.text()
