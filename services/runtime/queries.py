"""Query pieces the repositories share: one page of a query's rows with their total, a
case-insensitive substring match, and one writer at a time past a check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, func, text
from sqlalchemy.ext.asyncio import AsyncSession


async def fetch_page(
    session: AsyncSession, query: Select[Any], *, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    """The rows of the ordered `query` from `offset` on (at most `limit`), and how many rows it
    finds in all."""
    count = query.with_only_columns(func.count(), maintain_column_froms=True).order_by(None)
    total = int((await session.execute(count)).scalar_one())
    rows = (await session.execute(query.offset(offset).limit(limit))).all()
    return rows, total


def contains_text(column: ColumnElement[str], text: str) -> ColumnElement[bool]:
    """`column` holds `text`, case aside; LIKE's wildcards in `text` stand for themselves."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


async def one_writer_at_a_time(session: AsyncSession, key: str) -> None:
    """Until the transaction ends, only it gets past this for `key`: for a check and the write
    it allows (a per-user cap), which PostgreSQL's READ COMMITTED would let two transactions
    make on the same count. A transaction-scoped advisory lock there; SQLite's writing
    transactions are one at a time already (BEGIN IMMEDIATE)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )
