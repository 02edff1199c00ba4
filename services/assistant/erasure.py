"""Erasing a deleted account's data here: its chat sessions and their messages, its folders,
the provider tokens it spent per day, and the responses kept for its Idempotency-Keys. One
transaction; idempotent (a second run finds nothing). Run by the follower of the users
service's deletions (runtime/account_deletions.py).

The day's token total in the cache (budget.py) is left to expire at midnight: a number, no
content, and no account to spend it."""

from __future__ import annotations

from sqlalchemy import delete

from services.assistant.orm import folders, idempotency_keys, messages, sessions, token_usage
from services.runtime.db import Database

# Every table holding a user's rows by their owner column, children before their parents.
_OWNED = (messages, sessions, folders, token_usage, idempotency_keys)


class AccountErasure:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def erase(self, user_id: str) -> None:
        async with self._db.transaction() as session:
            for table in _OWNED:
                await session.execute(delete(table).where(table.c.user_id == user_id))
