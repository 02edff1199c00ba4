"""Price alerts: a user's own, created, paused, resumed and deleted here, and their firings
listed and marked read. Evaluating them is alert_watch.py's; each change here is told to it
(`changed`), so every replica's index follows. Another user's alert is as absent as none."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.alert_index import AlertRule, Condition
from services.portfolio.domain import PRICE_PLACES, normalize_symbol, parse_decimal
from services.portfolio.market_data import MarketData
from services.portfolio.records import check_room
from services.portfolio.watch_store import AlertRepository, FiredAlertRepository, FiredRecord
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.pagination import Page
from services.runtime.text_fields import trimmed_text

MAX_ACTIVE_ALERTS = 200
PERCENT_PLACES = 4
MAX_WINDOW = 7 * 86400
MIN_WINDOW = 60
DEFAULT_COOLDOWN = 300
MAX_NOTE = 200


@dataclass(frozen=True)
class AlertDraft:
    symbol: str
    condition: Condition | None
    price: str = ""
    percent: str = ""
    window_seconds: int = 0
    repeat: bool = False
    cooldown_seconds: int = 0
    note: str = ""


@dataclass(frozen=True)
class FiredPage:
    fired: list[FiredRecord]
    total: int
    unread: int


def alert_not_found(alert_id: str) -> NotFound:
    return NotFound(f"alert {alert_id} not found", reason="ALERT_NOT_FOUND")


def _require_id(raw: str) -> str:
    alert_id = raw.strip()
    if not alert_id:
        raise InvalidArgument.field("id", "is required")
    return alert_id


def _threshold(draft: AlertDraft) -> tuple[Condition, object, int]:
    """The condition, its threshold and its window (0 but for percent_change)."""
    if draft.condition is None:
        raise InvalidArgument.field("condition", "must be above, below or percent_change")
    if draft.condition is Condition.PERCENT_CHANGE:
        percent = parse_decimal("percent", draft.percent, places=PERCENT_PLACES)
        if percent == 0:
            raise InvalidArgument.field("percent", "must not be zero")
        if not MIN_WINDOW <= draft.window_seconds <= MAX_WINDOW:
            raise InvalidArgument.field(
                "windowSeconds", f"is required for percent_change ({MIN_WINDOW} to {MAX_WINDOW})"
            )
        return draft.condition, percent, draft.window_seconds
    price = parse_decimal("price", draft.price, places=PRICE_PLACES)
    if price <= 0:
        raise InvalidArgument.field("price", "must be greater than zero")
    return draft.condition, price, 0


class Alerts:
    def __init__(
        self,
        db: Database,
        market: MarketData,
        changed: Callable[[str], Awaitable[None]],
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`changed(alert_id)`: tells the evaluators an alert was created, changed or removed."""
        self._db = db
        self._market = market
        self._changed = changed
        self._clock = clock

    async def create(
        self,
        user_id: str,
        draft: AlertDraft,
        *,
        settle: Callable[[AsyncSession, AlertRule], Awaitable[None]] | None = None,
    ) -> AlertRule:
        """The new alert; `settle` commits with it, given it (a caller's Idempotency-Key)."""
        condition, threshold, window = _threshold(draft)
        symbol = (await self._market.stock(normalize_symbol(draft.symbol))).symbol
        note = trimmed_text("note", draft.note, most=MAX_NOTE)
        if draft.cooldown_seconds < 0 or draft.cooldown_seconds > MAX_WINDOW:
            raise InvalidArgument.field("cooldownSeconds", f"must be 0 to {MAX_WINDOW}")
        rule = AlertRule(
            id=str(uuid.uuid4()),
            user_id=user_id,
            symbol=symbol,
            condition=condition,
            threshold=threshold,  # type: ignore[arg-type]
            window_seconds=window,
            repeat=draft.repeat,
            # proto3 cannot tell an absent cool-down from 0: a repeating alert gets 300 s.
            cooldown_seconds=(draft.cooldown_seconds or DEFAULT_COOLDOWN) if draft.repeat else 0,
            active=True,
            note=note,
            created_at=self._clock(),
        )
        async with self._db.transaction() as session:
            repository = AlertRepository(session)
            await self._check_room(repository, user_id)
            await repository.add(rule)
            if settle is not None:
                await settle(session, rule)
        await self._changed(rule.id)
        return rule

    async def page(self, user_id: str, symbol: str, page: Page) -> tuple[list[AlertRule], int]:
        wanted = normalize_symbol(symbol) if symbol.strip() else ""
        async with self._db.reading() as session:
            return await AlertRepository(session).page(
                user_id, wanted, offset=page.offset, limit=page.limit
            )

    async def set_active(self, user_id: str, alert_id: str, active: bool) -> AlertRule:
        """Pause or resume; a fired one-off alert resumes as new (fires if its condition holds
        at the next tick)."""
        alert_id = _require_id(alert_id)
        async with self._db.transaction() as session:
            repository = AlertRepository(session)
            if active:
                # Before the read: a resume of the same alert at once (a double click at the
                # cap) then sees the other's, and answers the alert active, not over the cap.
                await repository.hold_cap(user_id)
            rule = await repository.get(alert_id, user_id)
            if rule is None:
                raise alert_not_found(alert_id)
            if active and not rule.active:
                await self._check_room(repository, user_id)
            await repository.set_active(alert_id, user_id, active)
        await self._changed(alert_id)
        return replace(rule, active=active)

    async def delete(self, user_id: str, alert_id: str) -> None:
        alert_id = _require_id(alert_id)
        async with self._db.transaction() as session:
            if not await AlertRepository(session).remove(alert_id, user_id):
                raise alert_not_found(alert_id)
        await self._changed(alert_id)

    async def fired(self, user_id: str, page: Page, *, unread: bool) -> FiredPage:
        async with self._db.reading() as session:
            repository = FiredAlertRepository(session)
            found, total = await repository.page(
                user_id, unread=unread, offset=page.offset, limit=page.limit
            )
            count = await repository.unread(user_id)
        return FiredPage(found, total, count)

    async def mark_read(self, user_id: str, ids: Sequence[str]) -> int:
        wanted = [i.strip() for i in ids if i.strip()]
        if ids and not wanted:
            return 0  # blank ids name no firing (no ids at all is what means every one)
        async with self._db.transaction() as session:
            return await FiredAlertRepository(session).mark_read(user_id, wanted)

    @staticmethod
    async def _check_room(repository: AlertRepository, user_id: str) -> None:
        held = await repository.count_active(user_id)
        check_room(held, MAX_ACTIVE_ALERTS, "active alerts", reason="TOO_MANY_ALERTS")
