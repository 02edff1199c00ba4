"""Each user's daily budget of provider tokens, reserved before a provider round and settled
after it, so that answers running at once cannot overshoot it together.

The day's total lives in the cache (one counter per user and UTC day, shared by every replica
through Redis), seeded from the stored answers' usage when absent: losing the cache loses
nothing but the reservations of answers under way. A round reserves `reserve` tokens (the
request's max_tokens, or ASSISTANT_TOKEN_RESERVE) atomically: it goes on only when that fits
what is left. When the answer ends, however it ends, its reservation is settled to what its
rounds really used (the difference refunded, or charged when they used more); a stopped or
failed round counts what it had used when it stopped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from services.assistant.repository import Chats
from services.runtime.cache import Cache
from services.runtime.errors import ResourceExhausted

log = logging.getLogger(__name__)

# A day's counter outlives its day by this much (clocks of replicas differ a little).
KEY_MARGIN = 3600.0
UNBOUNDED = 2**62


def seconds_to_midnight(now: datetime) -> float:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class TokenBudget:
    def __init__(self, cache: Cache, chats: Chats, *, daily: int, reserve: int) -> None:
        self._cache = cache
        self._chats = chats
        self._daily = daily
        self._reserve = reserve

    @property
    def unlimited(self) -> bool:
        return self._daily <= 0

    async def reserve(self, user_id: str) -> Reservation:
        """Hold one round's tokens for `user_id`, or raise TOKEN_BUDGET_EXHAUSTED."""
        reservation = Reservation(self, user_id, datetime.now(UTC))
        if not await reservation.more():
            raise self._exhausted(reservation)
        return reservation

    async def take(self, user_id: str, day: datetime, amount: int) -> bool:
        """Add `amount` to the user's total for `day` unless it no longer fits."""
        if self.unlimited or amount == 0:
            return True
        key = f"tokens:{user_id}:{day:%Y-%m-%d}"
        total = await self._cache.spend(key, amount, self._daily)
        if total is None:
            midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
            spent = await self._chats.tokens_since(user_id, midnight)
            ttl = seconds_to_midnight(datetime.now(UTC)) + KEY_MARGIN
            await self._cache.seed(key, spent, ttl)
            total = await self._cache.spend(key, amount, self._daily)
            if total is None:
                # The cache is down: the stored usage decides, without a reservation.
                log.warning("token budget unreserved: the cache failed", extra={"user": user_id})
                return spent + amount <= self._daily
        return total >= 0

    async def adjust(self, user_id: str, day: datetime, amount: int) -> None:
        """Add `amount` (a refund when negative) whatever the total: a settlement. An absent
        total (the cache lost it, or the day is over) is left alone: when it is seeded again,
        the stored usage already holds this answer's."""
        if not self.unlimited and amount:
            await self._cache.spend(f"tokens:{user_id}:{day:%Y-%m-%d}", amount, UNBOUNDED)

    def _exhausted(self, reservation: Reservation) -> ResourceExhausted:
        wait = seconds_to_midnight(datetime.now(UTC))
        return ResourceExhausted(
            f"today's assistant budget of {self._daily} tokens is spent (another answer needs "
            f"{self._reserve} of what is left); it renews at midnight UTC, in "
            f"{max(1, round(wait))} s",
            retry_after=wait,
            reason="TOKEN_BUDGET_EXHAUSTED",
        )

    @property
    def per_round(self) -> int:
        return self._reserve


class Reservation:
    """One answer's hold on its user's budget: one `per_round` per provider round it was let
    through, settled once to what its rounds used."""

    def __init__(self, budget: TokenBudget, user_id: str, day: datetime) -> None:
        self._budget = budget
        self._user_id = user_id
        self._day = day
        self._held = 0
        self._used = 0
        self._settled = False

    @property
    def held(self) -> int:
        return self._held

    @property
    def used(self) -> int:
        return self._used

    async def more(self) -> bool:
        """Reserve one more round; False when the budget has no room for it."""
        amount = self._budget.per_round
        if not await self._budget.take(self._user_id, self._day, amount):
            return False
        self._held += amount
        return True

    def charge(self, tokens: int) -> None:
        """A round's real usage (input + output tokens)."""
        self._used += max(0, tokens)

    async def settle(self) -> None:
        """Once, however the answer ended: refund what was held and not used, or charge what
        was used beyond it."""
        if self._settled:
            return
        self._settled = True
        await self._budget.adjust(self._user_id, self._day, self._used - self._held)
