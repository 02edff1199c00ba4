"""The price alerts of a deployment, indexed for evaluation on every market tick.

An alert fires on the tick that *crosses*: its condition was not true at the symbol's previous
tick and is true now. A fresh alert (new, resumed or changed) has no previous tick: it fires at
its first tick if its condition is true then.

Cost of a tick, per symbol: O(log n + crossed). Each symbol keeps two sorted ladders of
thresholds, `above` (fires when price >= threshold) and `below` (price <= threshold); a move
from p0 up to p1 crosses exactly the `above` thresholds in (p0, p1], a move down the `below`
thresholds in [p1, p0): two bisections, then only the alerts that fire. Percent alerts are
ladders too, one pair per window length (rises: change >= percent; falls: change <= percent),
the change being measured once per window against the symbol's price `window` seconds before
the tick (`PriceWindow`, bounded).

Numbers: the ladders hold exact integers (prices in millionths, percents in ten-thousandths:
the places the wire allows), so a bisection compares ints, not Decimals; a tick's price is
taken as the floor and the ceiling of its scaled value, which keeps "at or above" and "at or
below" exact. A move is the exact ratio (p - r) * 10^6 / r in integers.

Plain Python, no I/O: the evaluator (alert_watch.py) feeds it ticks and stores what fires.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

HUNDRED = Decimal(100)
PRICE_PLACES = 6  # a price threshold's places at most (the wire's rule)
PERCENT_PLACES = 4  # a percent threshold's places at most
# (p - r) / r in ten-thousandths of a percent: * 100 * 10^4.
MOVE_FACTOR = 10 ** (PERCENT_PLACES + 2)
# The price window: every second over the last hour, every five minutes over the last week
# (the longest window an alert may name); at most 3,600 + 2,016 prices per symbol.
FINE_SPACING, FINE_SPAN = 1.0, 3600.0
COARSE_SPACING, COARSE_SPAN = 300.0, 7 * 86400.0


class Condition(StrEnum):
    """Values are the stored (and the wire's short enum) names."""

    ABOVE = "above"
    BELOW = "below"
    PERCENT_CHANGE = "percent_change"


@dataclass(frozen=True)
class AlertRule:
    """A price alert as the index and its owner know it. `threshold` is the price of ABOVE and
    BELOW and the signed percent of PERCENT_CHANGE."""

    id: str
    user_id: str
    symbol: str
    condition: Condition
    threshold: Decimal
    window_seconds: int = 0
    repeat: bool = False
    cooldown_seconds: int = 0
    active: bool = True
    note: str = ""
    created_at: datetime | None = None
    last_fired_at: datetime | None = None

    def quiet_at(self, when: datetime) -> bool:
        """Whether a repeating alert is still in its cool-down after its last firing."""
        if self.last_fired_at is None:
            return False
        return when < self.last_fired_at + timedelta(seconds=self.cooldown_seconds)

    def holds(self, price: Decimal, change: Decimal | None) -> bool:
        """Whether the condition is true at `price` (`change`: the move over the window)."""
        if self.condition is Condition.ABOVE:
            return price >= self.threshold
        if self.condition is Condition.BELOW:
            return price <= self.threshold
        if change is None:
            return False
        return change >= self.threshold if self.threshold > 0 else change <= self.threshold


@dataclass(frozen=True)
class Firing:
    """An alert that fired on a tick: the tick's price and time, and for a percent alert the
    move it measured (in ten-thousandths of a percent, rounded down)."""

    rule: AlertRule
    price: Decimal
    at: datetime
    moved: int | None = None

    @property
    def change(self) -> Decimal | None:
        """The move in percent ("-5.0123")."""
        return None if self.moved is None else Decimal(self.moved).scaleb(-PERCENT_PLACES)


class Ladder:
    """Thresholds in ascending order, each with its alert's id."""

    __slots__ = ("ids", "keys")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: int, alert_id: str) -> None:
        at = bisect.bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.ids.insert(at, alert_id)

    def remove(self, key: int, alert_id: str) -> None:
        at = bisect.bisect_left(self.keys, key)
        while at < len(self.keys) and self.keys[at] == key:
            if self.ids[at] == alert_id:
                del self.keys[at], self.ids[at]
                return
            at += 1

    def rising(self, low: int, high: int) -> list[str]:
        """Ids whose key is in (low, high]: crossed by a move from `low` up to `high`."""
        if high <= low:
            return []
        return self.ids[bisect.bisect_right(self.keys, low) : bisect.bisect_right(self.keys, high)]

    def falling(self, low: int, high: int) -> list[str]:
        """Ids whose key is in [low, high): crossed by a move from `high` down to `low`."""
        if high <= low:
            return []
        return self.ids[bisect.bisect_left(self.keys, low) : bisect.bisect_left(self.keys, high)]


class _Samples:
    """Prices at least `spacing` seconds apart, the oldest kept only while within `span` (plus
    the one just before, the reference of the longest window)."""

    __slots__ = ("head", "prices", "spacing", "span", "times")

    def __init__(self, spacing: float, span: float) -> None:
        self.spacing, self.span = spacing, span
        self.times: list[float] = []
        self.prices: list[int] = []  # in millionths
        self.head = 0  # samples before it are dropped (compacted now and then)

    def add(self, at: float, price: int) -> None:
        if len(self.times) > self.head and at - self.times[-1] < self.spacing:
            return
        self.times.append(at)
        self.prices.append(price)
        while self.head + 1 < len(self.times) and self.times[self.head + 1] <= at - self.span:
            self.head += 1
        if self.head > 1024 and self.head * 2 > len(self.times):
            del self.times[: self.head], self.prices[: self.head]
            self.head = 0

    def __len__(self) -> int:
        return len(self.times) - self.head

    def oldest(self) -> float | None:
        return self.times[self.head] if len(self.times) > self.head else None

    def at_or_before(self, at: float) -> int | None:
        """The last price at or before `at`; the oldest kept when none is that old."""
        if len(self.times) <= self.head:
            return None
        found = bisect.bisect_right(self.times, at, lo=self.head) - 1
        return self.prices[max(found, self.head)]


class PriceWindow:
    """A symbol's recent prices, to measure a move over a window (60 s to 7 days). A window
    longer than the history known is measured from the oldest price known."""

    __slots__ = ("_coarse", "_fine")

    def __init__(self) -> None:
        self._fine = _Samples(FINE_SPACING, FINE_SPAN)
        self._coarse = _Samples(COARSE_SPACING, COARSE_SPAN)

    def __len__(self) -> int:
        """Prices kept (both resolutions)."""
        return len(self._fine) + len(self._coarse)

    def add(self, at: float, price: int) -> None:
        """`price` in millionths."""
        self._fine.add(at, price)
        self._coarse.add(at, price)

    def move(self, now: float, price: int, window: int) -> tuple[int, int] | None:
        """The move from the price `window` seconds before `now` to `price` (millionths), in
        ten-thousandths of a percent, rounded down and up (equal when exact)."""
        return self.moves(now, price, (window,))[window]

    def moves(
        self, now: float, price: int, windows: Iterable[int]
    ) -> dict[int, tuple[int, int] | None]:
        """`move` over each window at once (called on every tick: kept to one call)."""
        fine, coarse = self._fine, self._coarse
        fine_times, head = fine.times, fine.head
        oldest = fine_times[head] if len(fine_times) > head else None
        found: dict[int, tuple[int, int] | None] = {}
        for window in windows:
            since = now - window
            samples = fine if oldest is not None and since >= oldest else coarse
            if len(samples.times) <= samples.head:
                found[window] = None
                continue
            at = bisect.bisect_right(samples.times, since, lo=samples.head) - 1
            reference = samples.prices[max(at, samples.head)]
            if reference <= 0:
                found[window] = None
                continue
            scaled = (price - reference) * MOVE_FACTOR
            found[window] = (scaled // reference, -(-scaled // reference))
        return found

    def history(self) -> list[tuple[float, int]]:
        """The coarse prices kept (time, millionths), oldest first: what a window needs to be
        measured again after a restart (the fine ones are at most an hour's)."""
        coarse = self._coarse
        return list(zip(coarse.times[coarse.head :], coarse.prices[coarse.head :], strict=True))

    def restore(self, history: Iterable[tuple[float, int]]) -> bool:
        """Start from `history` (as `history` gave it), if nothing is known yet."""
        if len(self):
            return False
        for at, price in history:
            self._coarse.add(at, price)
        return True

    def change(self, now: float, price: Decimal, window: int) -> Decimal | None:
        """The move in percent from the price `window` seconds before `now` to `price`."""
        moved = self.move(now, _scaled(price, PRICE_PLACES)[0], window)
        return None if moved is None else Decimal(moved[0]).scaleb(-PERCENT_PLACES)


def _scaled(value: Decimal, places: int) -> tuple[int, int]:
    """`value * 10^places` rounded down and up (equal when it has at most `places` places)."""
    shifted = value.scaleb(places)
    floor = int(shifted.to_integral_value(rounding=ROUND_FLOOR))
    if floor == shifted:
        return floor, floor
    return floor, int(shifted.to_integral_value(rounding=ROUND_CEILING))


def _key(rule: AlertRule) -> int:
    """A threshold as its ladder's exact integer (the wire allows no more places)."""
    places = PERCENT_PLACES if rule.condition is Condition.PERCENT_CHANGE else PRICE_PLACES
    return _scaled(rule.threshold, places)[0]


class _Symbol:
    """One symbol's alerts and what its previous tick left."""

    __slots__ = (
        "above",
        "below",
        "falls",
        "fresh",
        "last",
        "moves",
        "rises",
        "window",
        "windows",
    )

    def __init__(self) -> None:
        self.above = Ladder()
        self.below = Ladder()
        self.rises: dict[int, Ladder] = {}
        self.falls: dict[int, Ladder] = {}
        # window -> its move (down, up) at the previous tick
        self.moves: dict[int, tuple[int, int] | None] = {}
        self.fresh: set[str] = set()
        self.last: tuple[int, int] | None = None  # the previous price, millionths (down, up)
        self.window = PriceWindow()
        self.windows: tuple[int, ...] = ()  # of the percent ladders, rises and falls

    def _rewindow(self) -> None:
        self.windows = tuple(self.rises.keys() | self.falls.keys())

    def ladder(self, rule: AlertRule, *, make: bool) -> Ladder | None:
        if rule.condition is Condition.ABOVE:
            return self.above
        if rule.condition is Condition.BELOW:
            return self.below
        ladders = self.rises if rule.threshold > 0 else self.falls
        found = ladders.get(rule.window_seconds)
        if found is None and make:
            found = ladders[rule.window_seconds] = Ladder()
            self._rewindow()
        return found

    def drop_empty(self, rule: AlertRule) -> None:
        if rule.condition is not Condition.PERCENT_CHANGE:
            return
        ladders = self.rises if rule.threshold > 0 else self.falls
        window = rule.window_seconds
        if window in ladders and not ladders[window]:
            del ladders[window]
            self._rewindow()
        if window not in self.rises and window not in self.falls:
            self.moves.pop(window, None)


class AlertIndex:
    """Every active alert, by symbol and threshold."""

    def __init__(self) -> None:
        self._rules: dict[str, AlertRule] = {}
        self._keys: dict[str, int] = {}
        self._fired_at: dict[str, datetime] = {}  # repeating alerts fired since put here
        self._quiet_until: dict[str, float] = {}  # repeating alerts in their cool-down
        self._symbols: dict[str, _Symbol] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._rules

    def get(self, alert_id: str) -> AlertRule | None:
        rule = self._rules.get(alert_id)
        fired = self._fired_at.get(alert_id)
        if rule is None or fired is None:
            return rule
        return dataclasses.replace(rule, last_fired_at=fired)

    def rules(self) -> Iterator[AlertRule]:
        return iter(list(self._rules.values()))

    def price_history(self) -> dict[str, list[tuple[float, int]]]:
        """Each symbol's coarse recent prices (see PriceWindow.history)."""
        found = {name: symbol.window.history() for name, symbol in self._symbols.items()}
        return {name: prices for name, prices in found.items() if prices}

    def restore_price_history(self, history: Mapping[str, Iterable[tuple[float, int]]]) -> int:
        """Windows started from a saved `price_history` (those of symbols with no price known
        yet); how many."""
        restored = 0
        for name, prices in history.items():
            symbol = self._symbols.get(name)
            if symbol is None:
                symbol = self._symbols[name] = _Symbol()
            restored += symbol.window.restore(prices)
        return restored

    def put(self, rule: AlertRule, *, fresh: bool = True) -> None:
        """Add or replace an alert (an inactive one is taken out). `fresh`: it fires at its
        next tick if its condition holds then; else only on a crossing, and one that has fired
        is taken to stand where its last firing left it (its first tick only places it)."""
        if rule.id in self._rules:
            self.remove(rule.id)
        if not rule.active:
            return
        key = _key(rule)
        self._rules[rule.id] = rule
        self._keys[rule.id] = key
        self._quiet_from(rule, rule.last_fired_at)
        symbol = self._symbols.get(rule.symbol)
        if symbol is None:
            symbol = self._symbols[rule.symbol] = _Symbol()
        ladder = symbol.ladder(rule, make=True)
        assert ladder is not None
        ladder.add(key, rule.id)
        if fresh or (symbol.last is None and rule.last_fired_at is None):
            symbol.fresh.add(rule.id)

    def settle(self, rule: AlertRule) -> None:
        """Replace what is known of an alert without changing its place or freshness (its last
        firing, read back from the database)."""
        known = self._rules.get(rule.id)
        if known is None or not rule.active:
            self.remove(rule.id)
            return
        if (known.condition, known.threshold, known.window_seconds, known.symbol) != (
            rule.condition,
            rule.threshold,
            rule.window_seconds,
            rule.symbol,
        ):
            self.put(rule)
            return
        self._rules[rule.id] = rule
        self._fired_at.pop(rule.id, None)
        self._quiet_from(rule, rule.last_fired_at)

    def remove(self, alert_id: str) -> None:
        rule = self._rules.pop(alert_id, None)
        if rule is None:
            return
        key = self._keys.pop(alert_id)
        self._fired_at.pop(alert_id, None)
        self._quiet_until.pop(alert_id, None)
        symbol = self._symbols[rule.symbol]
        ladder = symbol.ladder(rule, make=False)
        if ladder is not None:
            ladder.remove(key, rule.id)
        symbol.drop_empty(rule)
        symbol.fresh.discard(alert_id)

    def evaluate(
        self, ticks: Iterable[tuple[str, Decimal, datetime]], *, fire: bool = True
    ) -> list[Firing]:
        """One market step: each (symbol, price, time) after the symbol's previous tick. What
        fires is returned and applied here (a one-off alert leaves the index, a repeating one
        starts its cool-down). `fire=False` only follows the prices (a replica that does not
        lead: its index stays ready to take over)."""
        fired: list[Firing] = []
        for name, price, at in ticks:
            symbol = self._symbols.get(name)
            if symbol is None:
                symbol = self._symbols[name] = _Symbol()
            fired.extend(self._tick(symbol, price, at, fire))
        return fired

    def _tick(self, symbol: _Symbol, price: Decimal, at: datetime, fire: bool) -> list[Firing]:
        # The hot path (every symbol, every step): each ladder is searched only in the
        # direction the price (or the move) went, and nothing is allocated that stays empty.
        now = at.timestamp()
        down, up = _scaled(price, PRICE_PLACES)
        symbol.window.add(now, down)
        last, symbol.last = symbol.last, (down, up)
        rises, falls = symbol.rises, symbol.falls
        moves = symbol.window.moves(now, down, symbol.windows) if symbol.windows else {}
        previous, symbol.moves = symbol.moves, moves
        fresh = symbol.fresh
        if fresh:
            symbol.fresh = set()
        if not fire:
            return []
        crossed: dict[str, tuple[int, int] | None] = {}
        for alert_id in fresh:
            rule = self._rules.get(alert_id)
            if rule is not None and _after(rule, at):
                symbol.fresh.add(alert_id)  # a tick read late, from before it: not its first
            elif rule is not None and self._holds(alert_id, down, up, moves):
                crossed[alert_id] = moves.get(rule.window_seconds)
        if last is not None:
            if down > last[0]:
                crossed.update(dict.fromkeys(symbol.above.rising(last[0], down)))
            elif up < last[1]:
                crossed.update(dict.fromkeys(symbol.below.falling(up, last[1])))
        for window, move in moves.items():
            before = previous.get(window)
            if move is None or before is None:
                continue
            # Ladder.rising and Ladder.falling, inlined: this runs for every window of every
            # symbol on every step.
            if move[0] > before[0]:
                ladder = rises.get(window)
                if ladder is not None:
                    low = bisect.bisect_right(ladder.keys, before[0])
                    high = bisect.bisect_right(ladder.keys, move[0], lo=low)
                    for alert_id in ladder.ids[low:high]:
                        crossed[alert_id] = move
            elif move[1] < before[1]:
                ladder = falls.get(window)
                if ladder is not None:
                    low = bisect.bisect_left(ladder.keys, move[1])
                    high = bisect.bisect_left(ladder.keys, before[1], lo=low)
                    for alert_id in ladder.ids[low:high]:
                        crossed[alert_id] = move
        if not crossed:
            return []
        firings: list[Firing] = []
        quiet = self._quiet_until
        for alert_id, move in crossed.items():
            if quiet.get(alert_id, now) > now:
                continue  # a repeating alert in its cool-down
            rule = self._rules[alert_id]
            if _after(rule, at):
                continue  # a crossing read late (the watch was behind) from before it existed
            firings.append(Firing(rule, price, at, None if move is None else move[0]))
            if rule.repeat:
                self._fired_at[alert_id] = at
                quiet[alert_id] = now + rule.cooldown_seconds
            else:
                self.remove(alert_id)
        return firings

    def _holds(
        self, alert_id: str, down: int, up: int, moves: dict[int, tuple[int, int] | None]
    ) -> bool:
        rule, key = self._rules[alert_id], self._keys[alert_id]
        if rule.condition is Condition.ABOVE:
            return down >= key
        if rule.condition is Condition.BELOW:
            return up <= key
        move = moves.get(rule.window_seconds)
        if move is None:
            return False
        return move[0] >= key if key > 0 else move[1] <= key

    def _quiet_from(self, rule: AlertRule, fired: datetime | None) -> None:
        if rule.repeat and fired is not None:
            self._quiet_until[rule.id] = fired.timestamp() + rule.cooldown_seconds
        else:
            self._quiet_until.pop(rule.id, None)


def _after(rule: AlertRule, at: datetime) -> bool:
    """Whether `rule` was made after the tick at `at` (a tick the watch read late)."""
    return rule.created_at is not None and rule.created_at > at
