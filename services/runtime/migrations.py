"""Alembic, one migration history per service under `services/<name>/migrations/`.

Each service's `env.py` is two lines that call `run_env` with its metadata; `upgrade` applies
a service's migrations to a database (sync: Alembic drives its own event loop, so async
callers run it in a thread).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from services.runtime.db import create_engine, normalize_url

SERVICES_DIR = Path(__file__).resolve().parent.parent


def migrations_dir(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


def alembic_config(service: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir(service)))
    # ConfigParser interpolation would read a '%' in a password as syntax.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def downgrade(service: str, url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service, url), revision)


def _lock_key(url: str) -> int:
    """The advisory lock of this migration history: a signed 64-bit number from its service's
    name (services/<name>/migrations), the same for every install of the code."""
    folder = context.config.get_main_option("script_location") or url
    digest = hashlib.sha256(f"stockfolio:migrations:{Path(folder).parent.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def run_env(metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py`."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    def run(connection: Connection) -> None:
        # Batch mode lets ALTERs work on SQLite (it rebuilds the table).
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Two jobs at once (two replicas' start-up, an operator's second run): the
                # second waits here, then finds the history applied, instead of failing on the
                # first's rows. Held to the end of the transaction; one key per history.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(url)}
                )
            context.run_migrations()

    async def run_async() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())
