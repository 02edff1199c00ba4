"""Each user's daily budget of provider tokens, reserved before a provider round and settled
after it, so that answers running at once cannot overshoot it together.

The day's total lives in the cache (one counter per user and UTC day, shared by every replica
through Redis), seeded when absent from the tokens stored as spent (a ledger of its own, which
deleting sessions does not touch): losing the cache loses nothing but the reservations of
answers under way. A round reserves `reserve` tokens (the request's max_tokens, or
ASSISTANT_TOKEN_RESERVE) atomically: it goes on only when that fits what is left. When the
answer ends, however it ends, its reservation is settled to what its rounds really used (the
difference refunded, or charged when they used more); a stopped or failed round counts what it
had used when it stopped.

Each seeding of a total starts a new epoch (a random number beside it in the cache, seeded
just after it). A hold is refunded only into the total of its own epoch: a total lost and
seeded again after the hold never held it, and a refund into it would take it below what was
really spent. Where it cannot be told which total took a hold (the total lost in the very
moment of the spend), the hold is not refunded: overcharged, never overspent.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
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


def _total_key(user_id: str, day: datetime) -> str:
    return f"tokens:{user_id}:{day:%Y-%m-%d}"


def _epoch_key(user_id: str, day: datetime) -> str:
    return f"token-epoch:{user_id}:{day:%Y-%m-%d}"


def _new_epoch() -> int:
    return int.from_bytes(os.urandom(7), "big")


@dataclass(frozen=True)
class Hold:
    """Tokens taken from a day's total, and the epoch of the total they went into (None when
    it had none: seeded before epochs were kept, or the epoch was lost on its own)."""

    amount: int
    epoch: bytes | None


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

    async def take(self, user_id: str, day: datetime, amount: int) -> Hold | None:
        """Add `amount` to the user's total for `day` unless it no longer fits (None)."""
        if self.unlimited or amount == 0:
            return Hold(amount, None)
        key = _total_key(user_id, day)
        before = await self.epoch(user_id, day)
        total = await self._cache.spend(key, amount, self._daily)
        seeded = total is None
        if total is None:
            midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
            spent = await self._chats.tokens_since(user_id, midnight)
            ttl = seconds_to_midnight(datetime.now(UTC)) + KEY_MARGIN
            await self._cache.seed(key, spent, ttl)
            # The epoch is seeded after its total, so one without its total outlived it (it
            # was evicted alone): the total seeded now is a new one.
            if before is not None:
                await self._cache.delete(_epoch_key(user_id, day))
            await self._cache.seed(_epoch_key(user_id, day), _new_epoch(), ttl)
            total = await self._cache.spend(key, amount, self._daily)
            if total is None:
                # The cache is down: the stored usage decides, without a reservation.
                log.warning("token budget unreserved: the cache failed", extra={"user": user_id})
                return Hold(amount, None) if spent + amount <= self._daily else None
        if total < 0:
            return None
        after = await self.epoch(user_id, day)
        # An epoch that changed under a spend leaves it unknown which total took it: the
        # older is named, and the hold is not refunded (overcharged, never overspent). One
        # that appeared under it is the first seeding's, by another answer asked at once.
        return Hold(amount, after if seeded or before is None else before)

    async def epoch(self, user_id: str, day: datetime) -> bytes | None:
        """The epoch of the user's total for `day`: a new one each time it is seeded."""
        if self.unlimited:
            return None
        return await self._cache.get(_epoch_key(user_id, day))

    async def adjust(self, user_id: str, day: datetime, amount: int) -> None:
        """Add `amount` (a refund when negative) whatever the total: a settlement. An absent
        total (the cache lost it, or the day is over) is left alone: when it is seeded again,
        the stored usage already holds this answer's."""
        if not self.unlimited and amount:
            await self._cache.spend(_total_key(user_id, day), amount, UNBOUNDED)

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
        self._holds: list[Hold] = []
        self._used = 0
        self._settled = False

    @property
    def held(self) -> int:
        return sum(hold.amount for hold in self._holds)

    @property
    def used(self) -> int:
        return self._used

    async def more(self) -> bool:
        """Reserve one more round; False when the budget has no room for it."""
        hold = await self._budget.take(self._user_id, self._day, self._budget.per_round)
        if hold is None:
            return False
        self._holds.append(hold)
        return True

    def charge(self, tokens: int) -> None:
        """A round's real usage (input + output tokens)."""
        self._used += max(0, tokens)

    async def settle(self) -> None:
        """Once, however the answer ended: refund what was held and not used, or charge what
        was used beyond it. Holds of a total since lost are not in the current one: what was
        used is charged to it whole."""
        if self._settled:
            return
        self._settled = True
        if self._budget.unlimited:
            return
        epoch = await self._budget.epoch(self._user_id, self._day)
        held = sum(hold.amount for hold in self._holds if hold.epoch == epoch)
        await self._budget.adjust(self._user_id, self._day, self._used - held)
