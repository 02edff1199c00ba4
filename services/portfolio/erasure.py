"""Erasing a deleted account's data here: its portfolios (and with them their trades, splits,
orders, dividends, targets and savings plans), its watchlists, alerts and fired alerts, and the
responses kept for its Idempotency-Keys. One transaction; idempotent (a second run finds
nothing). Run by the follower of the users service's deletions (runtime/account_deletions.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import delete

from services.portfolio.orm import (
    alerts,
    fired_alerts,
    idempotency_keys,
    orders,
    portfolios,
    savings_plans,
    watchlists,
)
from services.runtime.db import Database

# Every other table holding a user's rows by their owner column (alerts go first, their ids
# kept), children before their parents. The rows without an owner column (trades, splits,
# dividends, targets, plan runs) go with their portfolio by the database's cascade (SQLite's
# foreign keys are on: runtime/db.py); the test counts them on both databases.
_OWNED = (orders, savings_plans, portfolios, watchlists, fired_alerts, idempotency_keys)


class AccountErasure:
    def __init__(self, db: Database, alert_changed: Callable[[str], Awaitable[None]]) -> None:
        """`alert_changed(alert_id)`: tells the alert evaluators an alert is gone (alert_watch)."""
        self._db = db
        self._alert_changed = alert_changed

    async def erase(self, user_id: str) -> None:
        async with self._db.transaction() as session:
            removed = await session.execute(
                delete(alerts).where(alerts.c.user_id == user_id).returning(alerts.c.id)
            )
            gone_alerts = [str(alert_id) for alert_id in removed.scalars()]
            for table in _OWNED:
                await session.execute(delete(table).where(table.c.user_id == user_id))
        # Every replica's index of alerts forgets them (open orders drop out of the matcher's
        # index at its next reload: a stale entry costs a rolled-back fill, never a trade).
        for alert_id in gone_alerts:
            await self._alert_changed(alert_id)
