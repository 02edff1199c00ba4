"""The alert index's rules on hand-made ticks (a crossing fires, a level does not; once vs
repeating with a cool-down; percent moves over a window), and the index against a brute-force
scan of every alert on random markets (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.alert_index import AlertIndex, AlertRule, Condition, PriceWindow

T0 = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rule(alert_id: str, condition: Condition, threshold: str, **fields: object) -> AlertRule:
    return AlertRule(
        id=alert_id,
        user_id="u-1",
        symbol=str(fields.pop("symbol", "AAPL")),
        condition=condition,
        threshold=Decimal(threshold),
        **fields,  # type: ignore[arg-type]
    )


def fired_ids(index: AlertIndex, price: str, seconds: float, symbol: str = "AAPL") -> list[str]:
    return sorted(f.rule.id for f in index.evaluate([(symbol, Decimal(price), at(seconds))]))


def test_an_above_alert_fires_on_the_tick_that_crosses_and_once() -> None:
    index = AlertIndex()
    index.evaluate([("AAPL", Decimal("100"), at(0))])
    index.put(rule("a", Condition.ABOVE, "101"))
    assert fired_ids(index, "100.50", 1) == []  # fresh, not true yet
    assert fired_ids(index, "101", 2) == ["a"]  # at the threshold counts
    assert "a" not in index  # a one-off alert is done
    assert fired_ids(index, "99", 3) == []
    assert fired_ids(index, "102", 4) == []


def test_a_fresh_alert_already_true_fires_at_its_first_tick_then_only_on_crossings() -> None:
    index = AlertIndex()
    index.evaluate([("AAPL", Decimal("100"), at(0))])
    index.put(rule("b", Condition.BELOW, "105", repeat=True, cooldown_seconds=0))
    assert fired_ids(index, "100", 1) == ["b"]
    assert fired_ids(index, "99", 2) == []  # still below: no crossing
    assert fired_ids(index, "106", 3) == []
    assert fired_ids(index, "105", 4) == ["b"]  # back at or below the threshold


def test_a_repeating_alert_keeps_quiet_for_its_cool_down() -> None:
    index = AlertIndex()
    index.evaluate([("AAPL", Decimal("100"), at(0))])
    index.put(rule("r", Condition.ABOVE, "101", repeat=True, cooldown_seconds=60))
    assert fired_ids(index, "101.5", 1) == ["r"]
    assert fired_ids(index, "100", 2) == []
    assert fired_ids(index, "102", 30) == []  # crossed within the cool-down: skipped
    assert fired_ids(index, "100", 40) == []
    assert fired_ids(index, "101", 61) == ["r"]  # the cool-down is over
    stored = index.get("r")
    assert stored is not None and stored.last_fired_at == at(61)


def test_a_jump_fires_every_threshold_it_passes_and_no_other() -> None:
    index = AlertIndex()
    index.evaluate([("AAPL", Decimal("100"), at(0))])
    for n, price in enumerate(["100.5", "101", "103", "103.01", "99"]):
        index.put(rule(f"up{n}", Condition.ABOVE, price), fresh=False)
    index.put(rule("down", Condition.BELOW, "99.5"), fresh=False)
    index.put(rule("other", Condition.ABOVE, "1", symbol="KO"), fresh=False)
    assert fired_ids(index, "103", 1) == ["up0", "up1", "up2"]
    assert fired_ids(index, "98", 2) == ["down"]


def test_a_percent_alert_measures_the_move_over_its_window() -> None:
    index = AlertIndex()
    for second in range(0, 61, 10):
        index.evaluate([("KO", Decimal("100"), at(second))])
    index.put(rule("drop", Condition.PERCENT_CHANGE, "-5", window_seconds=60, symbol="KO"))
    index.put(rule("rise", Condition.PERCENT_CHANGE, "2", window_seconds=60, symbol="KO"))
    assert fired_ids(index, "97", 70, "KO") == []  # -3% against 60 s ago
    assert fired_ids(index, "95", 80, "KO") == ["drop"]  # -5%
    assert fired_ids(index, "101", 90, "KO") == []  # +1%
    assert fired_ids(index, "102.5", 100, "KO") == ["rise"]


def test_the_price_window_finds_the_price_a_window_ago_and_stays_bounded() -> None:
    window = PriceWindow()
    millionths = 10**6
    for second in range(0, 20_000):
        window.add(float(second), second * millionths)
    # The move over 60 s in ten-thousandths of a percent, exactly, rounded down and up.
    exact = (19_999 - 19_939) * 10**6 / 19_939
    down, up = window.move(19_999.0, 19_999 * millionths, 60) or (0, 0)
    assert down <= exact <= up and up - down == 1
    # Over an hour back, the five-minute samples answer (within one sample).
    down, _ = window.move(19_999.0, 19_999 * millionths, 7200) or (0, 0)
    reference = 19_999 / (1 + down / 10**6)
    assert abs(reference - (19_999 - 7200)) <= 300
    assert len(window) <= 3602 + 2018  # an hour by the second, a week by five minutes


def test_paused_and_removed_alerts_do_not_fire() -> None:
    index = AlertIndex()
    index.evaluate([("AAPL", Decimal("100"), at(0))])
    index.put(rule("p", Condition.ABOVE, "101"))
    index.put(rule("p", Condition.ABOVE, "101", active=False))
    index.put(rule("d", Condition.ABOVE, "101"))
    index.remove("d")
    assert fired_ids(index, "102", 1) == []
    assert len(index) == 0


# --- the index against a scan of every alert ---------------------------------------------------

prices = st.integers(min_value=9_000, max_value=11_000).map(lambda cents: Decimal(cents) / 100)
conditions = st.sampled_from(list(Condition))


@st.composite
def alert_rules(draw: st.DrawFn, alert_id: str) -> AlertRule:
    condition = draw(conditions)
    if condition is Condition.PERCENT_CHANGE:
        threshold = draw(st.sampled_from(["-3", "-1", "-0.5", "0.5", "1", "3"]))
        window = draw(st.sampled_from([60, 120, 600]))
    else:
        threshold, window = str(draw(prices)), 0
    repeat = draw(st.booleans())
    return rule(
        alert_id,
        condition,
        threshold,
        window_seconds=window,
        repeat=repeat,
        cooldown_seconds=draw(st.sampled_from([0, 30, 120])) if repeat else 0,
        symbol=draw(st.sampled_from(["AAPL", "KO"])),
    )


def brute_force(
    rules: dict[str, AlertRule],
    history: dict[str, list[tuple[float, Decimal]]],
    previous: dict[str, dict[str, bool]],
    symbol: str,
    price: Decimal,
    when: datetime,
) -> list[str]:
    """Every alert checked one by one: true now, and not true at the previous tick (or never
    evaluated), and out of its cool-down."""
    now = when.timestamp()
    history[symbol].append((now, price))
    fired = []
    for alert in list(rules.values()):
        if alert.symbol != symbol:
            continue
        change = None
        if alert.condition is Condition.PERCENT_CHANGE:
            since = now - alert.window_seconds
            older = [p for t, p in history[symbol] if t <= since]
            reference = older[-1] if older else history[symbol][0][1]
            change = (price - reference) / reference * 100
        holds = alert.holds(price, change)
        was = previous[symbol].get(alert.id)
        previous[symbol][alert.id] = holds
        if holds and not was and not (alert.repeat and alert.quiet_at(when)):
            fired.append(alert.id)
            if alert.repeat:
                rules[alert.id] = AlertRule(**{**alert.__dict__, "last_fired_at": when})
            else:
                del rules[alert.id]
    return sorted(fired)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    count=st.integers(min_value=1, max_value=25),
    ticks=st.lists(
        st.tuples(st.sampled_from(["AAPL", "KO"]), prices, st.integers(1, 40)),
        min_size=1,
        max_size=60,
    ),
)
def test_the_index_fires_exactly_what_a_scan_of_every_alert_fires(
    data: st.DataObject, count: int, ticks: list[tuple[str, Decimal, int]]
) -> None:
    index = AlertIndex()
    history: dict[str, list[tuple[float, Decimal]]] = {"AAPL": [], "KO": []}
    previous: dict[str, dict[str, bool]] = {"AAPL": {}, "KO": {}}
    # Both symbols have a first price before any alert, as a running market does.
    start = {"AAPL": Decimal("100"), "KO": Decimal("100")}
    for symbol, price in start.items():
        index.evaluate([(symbol, price, T0)])
        history[symbol].append((T0.timestamp(), price))
    rules: dict[str, AlertRule] = {}
    for n in range(count):
        alert = data.draw(alert_rules(f"a{n}"))
        rules[alert.id] = alert
        index.put(alert)
    clock = 0
    for symbol, price, step in ticks:
        clock += step
        when = at(clock)
        expected = brute_force(rules, history, previous, symbol, price, when)
        got = sorted(f.rule.id for f in index.evaluate([(symbol, price, when)]))
        assert got == expected, (symbol, price, clock)


def test_a_window_started_from_saved_history_measures_as_the_one_that_saved_it() -> None:
    kept = PriceWindow()
    for minute in range(0, 24 * 60, 5):  # a day, a price every five minutes
        kept.add(minute * 60.0, 100_000_000 + minute * 1000)
    restored = PriceWindow()
    assert restored.restore(kept.history())
    now = 24 * 3600.0
    for window in (3600, 6 * 3600, 86400 - 300):
        assert restored.move(now, 90_000_000, window) == kept.move(now, 90_000_000, window)
    # A window that knows prices already keeps them: history is only where nothing is known.
    assert not restored.restore([(0.0, 1)])
    assert restored.move(now, 90_000_000, 3600) == kept.move(now, 90_000_000, 3600)
