"""Query pieces the repositories share: one page of a query's rows with their total, and a
case-insensitive substring match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, func
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
