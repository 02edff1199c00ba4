"""Upgrading a live deployment from the release before the email and token-usage migrations
(users 0001, assistant 0001) to head, over data the old code stored, on SQLite and PostgreSQL:
nothing fails, nothing is lost, every owner still signs in, and the models match the schema."""

from __future__ import annotations

import asyncio
import importlib
import re
import shutil
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import grpc
import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.assistant.repository import Chats
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database, normalize_url
from services.runtime.migrations import downgrade, upgrade
from services.runtime.sqltypes import UtcDateTime
from tests.conftest import POSTGRES_ADMIN_URL, users_server

ROOT = Path(__file__).resolve().parents[2]
OLD_HEAD = {"users": "0001", "assistant": "0001", "portfolio": "0005", "workspace": "0001"}
_OLD_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def old_normalize_email(raw: str) -> str:
    """services/users/domain.normalize_email at 2238447: what the old code stored."""
    email = raw.strip().lower()
    assert email and len(email) <= 254 and _OLD_EMAIL.match(email), raw
    return email


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
        return
    name = f"review_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def execute(url: str, *statements: sa.Executable) -> list[Any]:
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as connection:
            rows: list[Any] = []
            for statement in statements:
                result = await connection.execute(statement)
                if result.returns_rows:
                    rows = list(result.all())
            return rows
    finally:
        await engine.dispose()


# --- users -----------------------------------------------------------------------------------

USERS = sa.table(
    "users",
    *(sa.column(n) for n in ("id", "email", "name", "password_hash", "roles")),
    sa.column("created_at"),
    sa.column("updated_at"),
)


async def old_users(url: str, emails: dict[str, str], password: str) -> dict[str, str]:
    """Accounts as the old code stored them (its normalize_email, bcrypt hash of `password`)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4))
    now = datetime.now(UTC)
    ids = {key: str(uuid.uuid4()) for key in emails}
    rows = [
        {
            "id": ids[key],
            "email": old_normalize_email(email),
            "name": key,
            "password_hash": hashed,
            "roles": "user",
            "created_at": now,
            "updated_at": now,
        }
        for key, email in emails.items()
    ]
    await execute(url, *(USERS.insert().values(row) for row in rows))
    return ids


async def signs_in(stub: users_pb2_grpc.UsersServiceStub, email: str, password: str) -> str:
    try:
        reply = await stub.Login(users_pb2.LoginRequest(email=email, password=password))
    except grpc.aio.AioRpcError as error:
        return f"refused {error.code().name}"
    return str(reply.user.id)


# An address the old code accepted (254 characters at most, one @, no space) whose NFKC form is
# longer than the column: U+337F SQUARE CORPORATION is four characters in NFKC.
LONG = "\u337f" * 70 + "@example.jp"
# U+FE6B SMALL COMMERCIAL AT is "@" in NFKC: one address before, two @ after.
SMALL_AT = "ann\ufe6bhome@example.com"


@pytest.mark.parametrize("key", ["long", "small-at"])
async def test_every_old_account_still_signs_in_with_the_email_it_registered(
    make_config: Callable[..., RuntimeConfig], url: str, key: str
) -> None:
    """An account the old code stored, alone (no twin): the upgrade does not fail and the owner
    signs in with the email they registered, as before."""
    await asyncio.to_thread(upgrade, "users", url, OLD_HEAD["users"])
    emails = {"long": LONG, "small-at": SMALL_AT}
    emails = {key: emails[key], "plain": "ned@example.com"}
    ids = await old_users(url, emails, "correct-horse-9")
    await asyncio.to_thread(upgrade, "users", url)
    async with users_server(make_config, url) as stub:
        got = {k: await signs_in(stub, e, "correct-horse-9") for k, e in emails.items()}
    assert got == ids


async def test_twins_keep_their_forms_and_both_owners_still_sign_in(
    make_config: Callable[..., RuntimeConfig], url: str
) -> None:
    """0002_normalized_emails: 'Two accounts that only differed by such a form keep their emails
    as they were (nothing is merged); their owners sign in with the exact form they registered
    with.'"""
    await asyncio.to_thread(upgrade, "users", url, OLD_HEAD["users"])
    nfc = unicodedata.normalize("NFC", "zoë@example.com")
    nfd = unicodedata.normalize("NFD", "zoë@example.com")
    ids: dict[str, str] = {}
    ids |= await old_users(url, {"nfc": nfc}, "password-of-nfc-1")
    ids |= await old_users(url, {"nfd": nfd}, "password-of-nfd-2")
    ids |= await old_users(url, {"plain": "ada@example.com"}, "password-of-ada-3")
    ids |= await old_users(url, {"zw": "ad\u200ba@example.com"}, "password-of-zw-4")
    await asyncio.to_thread(upgrade, "users", url)
    async with users_server(make_config, url) as stub:
        got = {
            "nfc": await signs_in(stub, nfc, "password-of-nfc-1"),
            "nfd": await signs_in(stub, nfd, "password-of-nfd-2"),
            "plain": await signs_in(stub, "ada@example.com", "password-of-ada-3"),
            "zw": await signs_in(stub, "ad\u200ba@example.com", "password-of-zw-4"),
        }
    assert got == ids


TWIN_OF_JOE = "\uff4aoe@example.com"  # a fullwidth j: the old code stored it as its own account
FROM_ONE_ADDRESS = (("x-forwarded-for", "203.0.113.77"),)


async def attempt(stub: users_pb2_grpc.UsersServiceStub, email: str, password: str) -> str:
    try:
        reply = await stub.Login(
            users_pb2.LoginRequest(email=email, password=password), metadata=FROM_ONE_ADDRESS
        )
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return str(reply.user.id)


async def test_a_twins_sign_in_neither_forgives_nor_takes_the_failures_at_the_other(
    make_config: Callable[..., RuntimeConfig], sqlite_url: str
) -> None:
    await asyncio.to_thread(upgrade, "users", sqlite_url, OLD_HEAD["users"])
    ids = await old_users(sqlite_url, {"joe": "joe@example.com"}, "joe-secret-1")
    ids |= await old_users(sqlite_url, {"twin": TWIN_OF_JOE}, "twin-secret-2")
    await asyncio.to_thread(upgrade, "users", sqlite_url)
    async with users_server(make_config, sqlite_url) as stub:
        for _ in range(6):  # five free failures, and a sixth, which starts a wait of 1 s
            assert await attempt(stub, "joe@example.com", "guess-123456") == "UNAUTHENTICATED"
        # The twin's owner, right password, same address: not refused for failures at joe's.
        assert await attempt(stub, TWIN_OF_JOE, "twin-secret-2") == ids["twin"]
        assert await attempt(stub, "joe@example.com", "guess-123456") == "RESOURCE_EXHAUSTED"
        await asyncio.sleep(1.1)  # joe's first wait has passed
        # The twin's sign-in did not forgive joe's failures: a seventh starts a longer wait.
        assert await attempt(stub, "joe@example.com", "guess-123456") == "UNAUTHENTICATED"
        assert await attempt(stub, "joe@example.com", "guess-123456") == "RESOURCE_EXHAUSTED"


# --- assistant -------------------------------------------------------------------------------

MESSAGES = sa.table(
    "chat_messages",
    *(sa.column(n) for n in ("id", "session_id", "user_id", "sequence", "role", "content")),
    *(sa.column(n) for n in ("tool_calls", "incomplete", "model")),
    *(sa.column(n) for n in ("input_tokens", "output_tokens", "created_at")),
)
SESSIONS = sa.table(
    "chat_sessions",
    *(sa.column(n) for n in ("id", "user_id", "folder_id", "title", "model")),
    sa.column("created_at"),
    sa.column("updated_at"),
)


async def old_chat(
    url: str, user_id: str, tokens: list[tuple[int, int, datetime]]
) -> tuple[str, list[str]]:
    """A session with one message per (input, output, at), as the old code stored them."""
    created = sa.column("created_at", UtcDateTime())
    sessions = sa.table(
        "chat_sessions",
        *(
            sa.column(c.name)
            for c in SESSIONS.c
            if c.name != "created_at" and c.name != "updated_at"
        ),
        created,
        sa.column("updated_at", UtcDateTime()),
    )
    messages = sa.table(
        "chat_messages",
        *(sa.column(c.name) for c in MESSAGES.c if c.name != "created_at"),
        sa.column("created_at", UtcDateTime()),
    )
    sid = str(uuid.uuid4())
    first = tokens[0][2]
    statements: list[sa.Executable] = [
        sessions.insert().values(
            id=sid,
            user_id=user_id,
            folder_id=None,
            title="t",
            model="m",
            created_at=first,
            updated_at=tokens[-1][2],
        )
    ]
    ids = []
    for seq, (inp, out, at) in enumerate(tokens):
        mid = str(uuid.uuid4())
        ids.append(mid)
        statements.append(
            messages.insert().values(
                id=mid,
                session_id=sid,
                user_id=user_id,
                sequence=seq,
                role="assistant" if seq % 2 else "user",
                content=f"m{seq} ünï \x00"[:-1],
                tool_calls="[]",
                incomplete=False,
                model="m",
                input_tokens=inp,
                output_tokens=out,
                created_at=at,
            )
        )
    await execute(url, *statements)
    return sid, ids


async def test_token_usage_backfill_keeps_every_old_message_and_the_days_spent(url: str) -> None:
    await asyncio.to_thread(upgrade, "assistant", url, OLD_HEAD["assistant"])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    late = today - timedelta(microseconds=1)  # yesterday 23:59:59.999999 UTC
    # Big but int4: the old schema's Integer takes each, the old budget summed them per day.
    big = 2**31 - 1
    usage = [
        (0, 0, today),
        (10, 20, today + timedelta(hours=1)),
        (0, 0, late),
        (big, 5, late),
        (7, 0, late - timedelta(days=400)),
    ]
    sid, ids = await old_chat(url, "u-1", usage)
    await old_chat(url, "u-2", [(1, 1, today + timedelta(seconds=i)) for i in range(500)])
    await asyncio.to_thread(upgrade, "assistant", url)
    spent = await execute(url, sa.text("SELECT user_id, day, tokens FROM chat_token_usage"))
    got = {(r[0], str(r[1])[:10]): int(r[2]) for r in spent}
    assert got == {
        ("u-1", str(today.date())): 30,
        ("u-1", str(late.date())): big + 5,
        ("u-1", str((late - timedelta(days=400)).date())): 7,
        ("u-2", str(today.date())): 1000,
    }
    db = Database(url)
    try:
        chats = Chats(db)
        assert [m.id for m in await chats.messages("u-1", sid)] == ids
        assert await chats.tokens_since("u-1", today) == 30
    finally:
        await db.close()


async def test_assistant_downgrade_and_upgrade_again_keeps_messages(url: str) -> None:
    await asyncio.to_thread(upgrade, "assistant", url, OLD_HEAD["assistant"])
    now = datetime.now(UTC)
    sid, ids = await old_chat(url, "u-1", [(3, 4, now), (5, 6, now)])
    await asyncio.to_thread(upgrade, "assistant", url)
    await asyncio.to_thread(downgrade, "assistant", url, OLD_HEAD["assistant"])
    await asyncio.to_thread(upgrade, "assistant", url)
    db = Database(url)
    try:
        chats = Chats(db)
        assert [m.id for m in await chats.messages("u-1", sid)] == ids
        assert await chats.tokens_since("u-1", now - timedelta(hours=1)) == 18
    finally:
        await db.close()


async def test_users_downgrade_and_upgrade_again(url: str) -> None:
    await asyncio.to_thread(upgrade, "users", url, OLD_HEAD["users"])
    ids = await old_users(url, {"a": "josé@example.com", "b": "bob@example.com"}, "pw-123456789")
    await asyncio.to_thread(upgrade, "users", url)
    await asyncio.to_thread(downgrade, "users", url, OLD_HEAD["users"])
    await asyncio.to_thread(upgrade, "users", url)
    rows = await execute(url, sa.select(USERS.c.id, USERS.c.email))
    assert dict(rows) == {ids["a"]: "josé@example.com", ids["b"]: "bob@example.com"}


# --- every service: the models match the migrated schema ---------------------------------------


@pytest.mark.parametrize("service", ["users", "assistant", "portfolio", "workspace"])
async def test_models_match_the_migrated_schema(service: str, url: str) -> None:
    await asyncio.to_thread(upgrade, service, url, OLD_HEAD[service])
    await asyncio.to_thread(upgrade, service, url)
    metadata = importlib.import_module(f"services.{service}.orm").metadata
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.connect() as connection:

            def diff(sync: sa.Connection) -> list[object]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            found = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    # The GIN search index exists only in the migration (PostgreSQL), by design.
    found = [d for d in found if "ix_chat_messages_search" not in repr(d)]
    assert found == []


# --- two migration jobs at once (PostgreSQL) ----------------------------------------------------


def test_two_upgrades_at_once_both_succeed(url: str, tmp_path: Path) -> None:
    service = "users"
    if url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    upgrade(service, url, OLD_HEAD[service])
    # Enough old rows that each job's migration takes a while (they overlap).
    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as db:
        db.execute(
            "INSERT INTO users SELECT gen_random_uuid()::text, 'u' || i || '\u00e9'"
            " || '@x.io', 'n', '\\x00', 'user', now(), now() FROM generate_series(1, 8000) i"
        )
        db.execute("UPDATE users SET email = normalize(email, NFD)")  # NFD: each is rewritten
    # The second job runs the same release installed at another path (another image, an
    # operator's checkout): the lock is the service's, wherever its files are.
    other = tmp_path / "other-install"
    shutil.copytree(
        ROOT / "services", other / "services", ignore=shutil.ignore_patterns("__pycache__")
    )
    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.runtime.migrate", service],
            cwd=root,
            env={
                "PYTHONPATH": f"{root}:{ROOT / 'gen'}",
                "STOCKFOLIO_ENV": "test",
                f"{service.upper()}_DATABASE_URL": url,
                "PATH": "/usr/bin:/bin",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in (ROOT, other)
    ]
    results = [(job.wait(120), job.communicate()) for job in jobs]
    codes = [code for code, _ in results]
    tails = [err[-300:] for _, (_, err) in results]
    version = asyncio.run(execute(url, sa.text("SELECT version_num FROM alembic_version")))
    assert [v[0] for v in version] == ["0003_account_deletions"]
    assert codes == [0, 0], tails
