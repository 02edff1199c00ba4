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

Plain Python, no I/O: the evaluator (alert_watch.py) feeds it ticks and stores what fires.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

HUNDRED = Decimal(100)
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
    move it measured."""

    rule: AlertRule
    price: Decimal
    at: datetime
    change: Decimal | None = None


class Ladder:
    """Thresholds in ascending order, each with its alert's id."""

    __slots__ = ("ids", "keys")

    def __init__(self) -> None:
        self.keys: list[Decimal] = []
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: Decimal, alert_id: str) -> None:
        at = bisect.bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.ids.insert(at, alert_id)

    def remove(self, key: Decimal, alert_id: str) -> None:
        at = bisect.bisect_left(self.keys, key)
        while at < len(self.keys) and self.keys[at] == key:
            if self.ids[at] == alert_id:
                del self.keys[at], self.ids[at]
                return
            at += 1

    def rising(self, low: Decimal, high: Decimal) -> list[str]:
        """Ids whose key is in (low, high]: crossed by a move from `low` up to `high`."""
        return self.ids[bisect.bisect_right(self.keys, low) : bisect.bisect_right(self.keys, high)]

    def falling(self, low: Decimal, high: Decimal) -> list[str]:
        """Ids whose key is in [low, high): crossed by a move from `high` down to `low`."""
        return self.ids[bisect.bisect_left(self.keys, low) : bisect.bisect_left(self.keys, high)]


class _Samples:
    """Prices at least `spacing` seconds apart, the oldest kept only while within `span` (plus
    the one just before, the reference of the longest window)."""

    __slots__ = ("head", "prices", "spacing", "span", "times")

    def __init__(self, spacing: float, span: float) -> None:
        self.spacing, self.span = spacing, span
        self.times: list[float] = []
        self.prices: list[Decimal] = []
        self.head = 0  # samples before it are dropped (compacted now and then)

    def add(self, at: float, price: Decimal) -> None:
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

    def at_or_before(self, at: float) -> Decimal | None:
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

    def add(self, at: float, price: Decimal) -> None:
        self._fine.add(at, price)
        self._coarse.add(at, price)

    def change(self, now: float, price: Decimal, window: int) -> Decimal | None:
        """The move in percent from the price `window` seconds before `now` to `price`."""
        since = now - window
        oldest_fine = self._fine.oldest()
        samples = self._fine if oldest_fine is not None and since >= oldest_fine else self._coarse
        reference = samples.at_or_before(since)
        if reference is None or reference <= 0:
            return None
        return (price - reference) / reference * HUNDRED


class _Symbol:
    """One symbol's alerts and what its previous tick left."""

    __slots__ = ("above", "below", "changes", "falls", "fresh", "last", "rises", "window")

    def __init__(self) -> None:
        self.above = Ladder()
        self.below = Ladder()
        self.rises: dict[int, Ladder] = {}
        self.falls: dict[int, Ladder] = {}
        self.changes: dict[int, Decimal | None] = {}  # window -> its move at the previous tick
        self.fresh: set[str] = set()
        self.last: Decimal | None = None
        self.window = PriceWindow()

    def ladder(self, rule: AlertRule, *, make: bool) -> Ladder | None:
        if rule.condition is Condition.ABOVE:
            return self.above
        if rule.condition is Condition.BELOW:
            return self.below
        ladders = self.rises if rule.threshold > 0 else self.falls
        found = ladders.get(rule.window_seconds)
        if found is None and make:
            found = ladders[rule.window_seconds] = Ladder()
        return found

    def drop_empty(self, rule: AlertRule) -> None:
        if rule.condition is not Condition.PERCENT_CHANGE:
            return
        ladders = self.rises if rule.threshold > 0 else self.falls
        window = rule.window_seconds
        if window in ladders and not ladders[window]:
            del ladders[window]
        if window not in self.rises and window not in self.falls:
            self.changes.pop(window, None)


class AlertIndex:
    """Every active alert, by symbol and threshold."""

    def __init__(self) -> None:
        self._rules: dict[str, AlertRule] = {}
        self._symbols: dict[str, _Symbol] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._rules

    def get(self, alert_id: str) -> AlertRule | None:
        return self._rules.get(alert_id)

    def rules(self) -> Iterator[AlertRule]:
        return iter(list(self._rules.values()))

    def put(self, rule: AlertRule, *, fresh: bool = True) -> None:
        """Add or replace an alert (an inactive one is taken out). `fresh`: it fires at its
        next tick if its condition holds then; else only on a crossing."""
        known = self._rules.get(rule.id)
        if known is not None:
            self.remove(rule.id)
        if not rule.active:
            return
        self._rules[rule.id] = rule
        symbol = self._symbols.get(rule.symbol)
        if symbol is None:
            symbol = self._symbols[rule.symbol] = _Symbol()
        ladder = symbol.ladder(rule, make=True)
        assert ladder is not None
        ladder.add(rule.threshold, rule.id)
        if fresh or symbol.last is None:
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

    def remove(self, alert_id: str) -> None:
        rule = self._rules.pop(alert_id, None)
        if rule is None:
            return
        symbol = self._symbols[rule.symbol]
        ladder = symbol.ladder(rule, make=False)
        if ladder is not None:
            ladder.remove(rule.threshold, rule.id)
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
        now = at.timestamp()
        symbol.window.add(now, price)
        last, symbol.last = symbol.last, price
        changes = {
            window: symbol.window.change(now, price, window)
            for window in {*symbol.rises, *symbol.falls}
        }
        previous, symbol.changes = symbol.changes, changes
        fresh, symbol.fresh = symbol.fresh, set()
        if not fire:
            return []
        crossed: dict[str, Decimal | None] = {}
        for alert_id in fresh:
            rule = self._rules.get(alert_id)
            if rule is not None:
                change = changes.get(rule.window_seconds)
                if rule.holds(price, change):
                    crossed[alert_id] = change
        if last is not None and price > last:
            crossed.update(dict.fromkeys(symbol.above.rising(last, price)))
        elif last is not None and price < last:
            crossed.update(dict.fromkeys(symbol.below.falling(price, last)))
        for window, change in changes.items():
            before = previous.get(window)
            if change is None or before is None or change == before:
                continue
            if change > before and window in symbol.rises:
                for alert_id in symbol.rises[window].rising(before, change):
                    crossed[alert_id] = change
            elif change < before and window in symbol.falls:
                for alert_id in symbol.falls[window].falling(change, before):
                    crossed[alert_id] = change
        firings: list[Firing] = []
        for alert_id, change in crossed.items():
            rule = self._rules.get(alert_id)
            if rule is None or (rule.repeat and rule.quiet_at(at)):
                continue
            firings.append(Firing(rule, price, at, change))
            if rule.repeat:
                self._rules[alert_id] = dataclasses.replace(rule, last_fired_at=at)
            else:
                self.remove(alert_id)
        return firings
