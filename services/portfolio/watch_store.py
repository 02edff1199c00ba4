"""Loads and saves watchlists, price alerts and their firings; hides SQLAlchemy from the rest.
Every read and write names its owner: another user's row is as absent as a missing one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.alert_index import AlertRule, Condition
from services.portfolio.orm import alerts, fired_alerts, watchlists
from services.runtime.queries import fetch_page, one_writer_at_a_time


@dataclass(frozen=True)
class WatchlistRecord:
    id: str
    user_id: str
    name: str
    symbols: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FiredRecord:
    """One firing of an alert, as kept for its owner."""

    id: str
    user_id: str
    alert_id: str
    symbol: str
    condition: Condition
    threshold: Decimal
    price: Decimal
    fired_at: datetime
    read: bool
    message: str


def _watchlist(row: Any) -> WatchlistRecord:
    return WatchlistRecord(
        row.id, row.user_id, row.name, tuple(row.symbols.split()), row.created_at, row.updated_at
    )


def _rule(row: Any) -> AlertRule:
    return AlertRule(
        id=row.id,
        user_id=row.user_id,
        symbol=row.symbol,
        condition=Condition(row.condition),
        threshold=row.threshold,
        window_seconds=row.window_seconds,
        repeat=row.repeat,
        cooldown_seconds=row.cooldown_seconds,
        active=row.active,
        note=row.note,
        created_at=row.created_at,
        last_fired_at=row.last_fired_at,
    )


def _fired(row: Any) -> FiredRecord:
    return FiredRecord(
        row.id,
        row.user_id,
        row.alert_id,
        row.symbol,
        Condition(row.condition),
        row.threshold,
        row.price,
        row.fired_at,
        row.read,
        row.message,
    )


class WatchlistRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def count(self, user_id: str) -> int:
        """The user's watchlists, counted for the cap: the user's other writers that count
        wait until this transaction ends."""
        await one_writer_at_a_time(self._session, f"watchlists:{user_id}")
        query = select(func.count()).select_from(watchlists).where(watchlists.c.user_id == user_id)
        return int((await self._session.execute(query)).scalar_one())

    async def add(self, record: WatchlistRecord) -> None:
        await self._session.execute(
            insert(watchlists).values(
                id=record.id,
                user_id=record.user_id,
                name=record.name,
                symbols=" ".join(record.symbols),
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
        )

    async def get(
        self, watchlist_id: str, user_id: str, *, lock: bool = False
    ) -> WatchlistRecord | None:
        """The user's list; with `lock`, locked until the transaction ends (an edit: the next
        edit reads this one's stamp)."""
        query = select(watchlists).where(
            watchlists.c.id == watchlist_id, watchlists.c.user_id == user_id
        )
        if lock:
            query = query.with_for_update()
        row = (await self._session.execute(query)).first()
        return _watchlist(row) if row else None

    async def page(
        self, user_id: str, *, offset: int, limit: int
    ) -> tuple[list[WatchlistRecord], int]:
        query = (
            select(watchlists)
            .where(watchlists.c.user_id == user_id)
            .order_by(watchlists.c.created_at, watchlists.c.id)
        )
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_watchlist(r) for r in rows], total

    async def replace(self, record: WatchlistRecord) -> bool:
        statement = (
            update(watchlists)
            .where(watchlists.c.id == record.id, watchlists.c.user_id == record.user_id)
            .values(
                name=record.name, symbols=" ".join(record.symbols), updated_at=record.updated_at
            )
        )
        return bool((await self._session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def remove(self, watchlist_id: str, user_id: str) -> bool:
        statement = delete(watchlists).where(
            watchlists.c.id == watchlist_id, watchlists.c.user_id == user_id
        )
        return bool((await self._session.execute(statement)).rowcount)  # type: ignore[attr-defined]


class AlertRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def hold_cap(self, user_id: str) -> None:
        """Until this transaction ends, the user's other writers that count for the cap wait
        (what is read after this is what they committed)."""
        await one_writer_at_a_time(self._session, f"alerts:{user_id}")

    async def count_active(self, user_id: str) -> int:
        """The user's active alerts, counted for the cap (held: see `hold_cap`)."""
        await self.hold_cap(user_id)
        query = (
            select(func.count())
            .select_from(alerts)
            .where(alerts.c.user_id == user_id, alerts.c.active.is_(True))
        )
        return int((await self._session.execute(query)).scalar_one())

    async def add(self, rule: AlertRule) -> None:
        await self._session.execute(
            insert(alerts).values(
                id=rule.id,
                user_id=rule.user_id,
                symbol=rule.symbol,
                condition=rule.condition.value,
                threshold=rule.threshold,
                window_seconds=rule.window_seconds,
                repeat=rule.repeat,
                cooldown_seconds=rule.cooldown_seconds,
                active=rule.active,
                note=rule.note,
                created_at=rule.created_at,
                last_fired_at=rule.last_fired_at,
            )
        )

    async def get(self, alert_id: str, user_id: str | None = None) -> AlertRule | None:
        """The user's alert (any user's when `user_id` is None: the evaluator's reload)."""
        query = select(alerts).where(alerts.c.id == alert_id)
        if user_id is not None:
            query = query.where(alerts.c.user_id == user_id)
        row = (await self._session.execute(query)).first()
        return _rule(row) if row else None

    async def active(self) -> list[AlertRule]:
        """Every active alert of every user: what the evaluator's index starts from."""
        rows = (await self._session.execute(select(alerts).where(alerts.c.active.is_(True)))).all()
        return [_rule(r) for r in rows]

    async def page(
        self, user_id: str, symbol: str, *, offset: int, limit: int
    ) -> tuple[list[AlertRule], int]:
        query = select(alerts).where(alerts.c.user_id == user_id)
        if symbol:
            query = query.where(alerts.c.symbol == symbol)
        query = query.order_by(alerts.c.created_at, alerts.c.id)
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_rule(r) for r in rows], total

    async def set_active(self, alert_id: str, user_id: str, active: bool) -> bool:
        statement = (
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.user_id == user_id)
            .values(active=active)
        )
        return bool((await self._session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def remove(self, alert_id: str, user_id: str) -> bool:
        statement = delete(alerts).where(alerts.c.id == alert_id, alerts.c.user_id == user_id)
        return bool((await self._session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def claim_firing(self, rule: AlertRule, at: datetime) -> bool:
        """Record that `rule` fired at `at` if it still may: active, and (repeating) out of its
        cool-down and not fired at this tick already. The check and the write are one
        statement, so an alert fires at most once however many evaluators race."""
        conditions = [alerts.c.id == rule.id, alerts.c.active.is_(True)]
        if rule.repeat:
            quiet_from = at - timedelta(seconds=rule.cooldown_seconds)
            conditions.append(
                or_(
                    alerts.c.last_fired_at.is_(None),
                    (alerts.c.last_fired_at <= quiet_from) & (alerts.c.last_fired_at < at),
                )
            )
            values: dict[str, Any] = {"last_fired_at": at}
        else:
            values = {"last_fired_at": at, "active": False}
        statement = update(alerts).where(*conditions).values(**values)
        return bool((await self._session.execute(statement)).rowcount)  # type: ignore[attr-defined]


class FiredAlertRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, fired: FiredRecord) -> None:
        await self._session.execute(
            insert(fired_alerts).values(
                id=fired.id,
                user_id=fired.user_id,
                alert_id=fired.alert_id,
                symbol=fired.symbol,
                condition=fired.condition.value,
                threshold=fired.threshold,
                price=fired.price,
                fired_at=fired.fired_at,
                read=fired.read,
                message=fired.message,
            )
        )

    async def page(
        self, user_id: str, *, unread: bool, offset: int, limit: int
    ) -> tuple[list[FiredRecord], int]:
        query = select(fired_alerts).where(fired_alerts.c.user_id == user_id)
        if unread:
            query = query.where(fired_alerts.c.read.is_(False))
        query = query.order_by(fired_alerts.c.fired_at.desc(), fired_alerts.c.id)
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_fired(r) for r in rows], total

    async def unread(self, user_id: str) -> int:
        query = (
            select(func.count())
            .select_from(fired_alerts)
            .where(fired_alerts.c.user_id == user_id, fired_alerts.c.read.is_(False))
        )
        return int((await self._session.execute(query)).scalar_one())

    async def mark_read(self, user_id: str, ids: Sequence[str]) -> int:
        """The user's firings named (every unread one when `ids` is empty) marked read; how
        many changed."""
        statement = update(fired_alerts).where(
            fired_alerts.c.user_id == user_id, fired_alerts.c.read.is_(False)
        )
        if ids:
            statement = statement.where(fired_alerts.c.id.in_(list(ids)))
        result = await self._session.execute(statement.values(read=True))
        return int(result.rowcount)  # type: ignore[attr-defined]
