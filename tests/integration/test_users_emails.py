"""One email, one account, whatever its Unicode form: "josé" with a composed or a combining accent
registered as two accounts that look the same, and a zero-width space made a third. Through the
real users server, and the migration that brings stored emails to the one form, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.users.v1 import users_pb2

from services.runtime.config import RuntimeConfig
from services.runtime.db import normalize_url
from services.runtime.migrations import upgrade
from services.users.domain import normalize_email
from tests.conftest import users_server

PASSWORD = "correct-horse-9"
COMPOSED = unicodedata.normalize("NFC", "José@Example.com")
DECOMPOSED = unicodedata.normalize("NFD", "josé@example.com")


def test_every_form_of_an_email_is_one_address_and_invisible_characters_are_refused() -> None:
    assert COMPOSED != DECOMPOSED
    assert normalize_email(COMPOSED) == normalize_email(DECOMPOSED) == "josé@example.com"
    assert normalize_email(" \uff21da@Example.COM ") == "ada@example.com"  # fullwidth A
    for raw in (COMPOSED, DECOMPOSED, "\u210cal@example.com", "\u0130sa@example.com"):
        once = normalize_email(raw)
        assert normalize_email(once) == once
    for sneaky in ("a\u200bda@example.com", "ada@exa\u00admple.com", "ada@example.com\x07"):
        with pytest.raises(Exception, match="invisible or control characters"):
            normalize_email(sneaky)


async def test_an_email_in_another_form_is_the_same_account(
    make_config: Callable[..., RuntimeConfig], database_url: str
) -> None:
    await asyncio.to_thread(upgrade, "users", database_url)
    async with users_server(make_config, database_url) as stub:
        first = await stub.Register(users_pb2.RegisterRequest(email=COMPOSED, password=PASSWORD))
        assert first.user.email == "josé@example.com"
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await stub.Register(users_pb2.RegisterRequest(email=DECOMPOSED, password=PASSWORD))
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        signed = await stub.Login(users_pb2.LoginRequest(email=DECOMPOSED, password=PASSWORD))
        assert signed.user.id == first.user.id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Register(
                users_pb2.RegisterRequest(email="jos\u200bé@example.com", password=PASSWORD)
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_migration_brings_stored_emails_to_one_form_and_merges_nothing(
    database_url: str,
) -> None:
    await asyncio.to_thread(upgrade, "users", database_url, "0001")
    engine = create_async_engine(normalize_url(database_url))
    users = sa.table(
        "users",
        *(sa.column(name) for name in ("id", "email", "name", "password_hash", "roles")),
        sa.column("created_at"),
        sa.column("updated_at"),
    )
    now = datetime.now(UTC)
    stored = {
        "decomposed": DECOMPOSED,
        "zero-width": "ad\u200ba@example.com",
        # Two accounts from before, one form each: both stay as they are.
        "twin-nfc": unicodedata.normalize("NFC", "zoë@example.com"),
        "twin-nfd": unicodedata.normalize("NFD", "zoë@example.com"),
        "plain": "ned@example.com",
    }
    ids = {key: str(uuid.uuid4()) for key in stored}
    try:
        async with engine.begin() as connection:
            for key, email in stored.items():
                row: dict[str, object] = {"id": ids[key], "email": email, "name": key}
                row |= {"password_hash": b"x", "roles": "user"}
                row |= {"created_at": now, "updated_at": now}
                await connection.execute(users.insert().values(row))
        await asyncio.to_thread(upgrade, "users", database_url)
        async with engine.connect() as connection:
            found = dict((await connection.execute(sa.select(users.c.id, users.c.email))).all())
    finally:
        await engine.dispose()
    assert found[ids["decomposed"]] == "josé@example.com"
    assert found[ids["zero-width"]] == "ada@example.com"
    assert found[ids["plain"]] == "ned@example.com"
    twins = {found[ids["twin-nfc"]], found[ids["twin-nfd"]]}
    assert twins == {stored["twin-nfc"], stored["twin-nfd"]}  # nothing merged
