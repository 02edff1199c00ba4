"""The market's split calendar (services/portfolio/split_calendar.py, mock_market.py): Alpha
Vantage's SPLITS rows read into whole-number ratios, bad rows left out; the simulated market's
schedule fixed by its seed, with prices as markets print them (unadjusted) around a split."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.portfolio.mock_market import MockMarket, SplitSchedule
from services.portfolio.split_calendar import parse_splits, ratio_of_factor, within

D = Decimal


@pytest.mark.parametrize(
    ("factor", "ratio"),
    [
        ("4.0000", (4, 1)),
        ("4", (4, 1)),
        ("20.0000", (20, 1)),
        ("1.5000", (3, 2)),
        ("1.2500", (5, 4)),
        ("0.5000", (1, 2)),  # a 1-for-2 reverse split
        ("0.1000", (1, 10)),
        ("0.0050", (1, 200)),
        ("0.3333", (1, 3)),  # four places cannot state a third: the ratio is found anyway
        ("0.6667", (2, 3)),
        ("1.3333", (4, 3)),
        (" 2.0000 ", (2, 1)),
    ],
)
def test_a_provider_factor_is_read_as_the_ratio_it_states(
    factor: str, ratio: tuple[int, int]
) -> None:
    assert ratio_of_factor(factor) == ratio


@pytest.mark.parametrize(
    "factor",
    ["", "abc", "1.0000", "1", "0", "0.0000", "-2.0000", "NaN", "Infinity", "1.0137", "2" * 40],
)
def test_a_factor_that_states_no_split_is_refused(factor: str) -> None:
    assert ratio_of_factor(factor) is None


def test_splits_rows_in_the_wire_format_are_read_and_bad_rows_left_out() -> None:
    payload: dict[str, Any] = {
        "symbol": "AAPL",
        "data": [
            {"effective_date": "2020-08-31", "split_factor": "4.0000"},
            {"effective_date": "2014-06-09", "split_factor": "7.0000"},
            {"effective_date": "2024-05-20", "split_factor": "0.5000"},
            {"effective_date": "2019-13-01", "split_factor": "2.0000"},  # no such day
            {"effective_date": "2018-01-02", "split_factor": "1.0000"},  # no split
            {"effective_date": "2017-01-03"},  # no factor
            {"split_factor": "3.0000"},  # no day
            {"effective_date": "2016-01-04", "split_factor": None},
            "2015-01-05,2.0",
            None,
        ],
    }
    assert parse_splits("AAPL", payload["data"]) == {
        date(2020, 8, 31): (4, 1),
        date(2014, 6, 9): (7, 1),
        date(2024, 5, 20): (1, 2),
    }
    assert parse_splits("AAPL", None) == {}
    assert parse_splits("AAPL", {"effective_date": "2020-08-31"}) == {}


def test_within_keeps_the_range_and_leaves_out_symbols_without_a_split_in_it() -> None:
    calendar = {
        "AAPL": {date(2020, 8, 31): (4, 1), date(2014, 6, 9): (7, 1)},
        "TSLA": {date(2022, 8, 25): (3, 1)},
    }
    assert within(calendar, date(2020, 8, 31), date(2021, 1, 1)) == {
        "AAPL": {date(2020, 8, 31): (4, 1)}
    }


NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def calendar_of(seed: int) -> dict[str, dict[date, tuple[int, int]]]:
    market = MockMarket(seed=seed, clock=lambda: NOW)
    return asyncio.run(market.split_calendar(date(2000, 1, 1), date(2035, 12, 31)))


def test_the_simulated_schedule_is_fixed_by_the_seed() -> None:
    first, again, other = calendar_of(42), calendar_of(42), calendar_of(7)
    assert first == again
    assert first != other
    assert set(first) == {"NFLX", "WMT", "COST", "INTC"}
    assert {ratio for days in first.values() for ratio in days.values()} == {
        (10, 1),
        (3, 1),
        (2, 1),
        (1, 2),
    }
    # Every split takes effect on a weekday, about every so many years.
    days = sorted(first["COST"])
    assert all(day.weekday() < 5 for symbol in first for day in first[symbol])
    assert all(1090 <= (b - a).days <= 1100 for a, b in itertools.pairwise(days))
    # Asked for some symbols, it answers for those alone.
    market = MockMarket(seed=42, clock=lambda: NOW)
    only = asyncio.run(market.split_calendar(date(2000, 1, 1), date(2035, 12, 31), {"WMT", "KO"}))
    assert only == {"WMT": first["WMT"]}


def test_closes_before_a_split_are_its_multiple_and_from_its_day_on_as_they_were() -> None:
    split_day = date(2026, 11, 18)
    schedule = SplitSchedule(fixed={"AAPL": {split_day: (2, 1)}, "INTC": {split_day: (1, 4)}})
    split = MockMarket(seed=3, clock=lambda: NOW, splits=schedule)
    plain = MockMarket(seed=3, clock=lambda: NOW, splits=SplitSchedule(fixed={}))

    async def closes(market: MockMarket, symbol: str) -> dict[date, Decimal]:
        return await market.daily_history(symbol, date(2026, 11, 10), date(2026, 11, 24))

    for symbol, scale in (("AAPL", D(2)), ("INTC", D("0.25"))):
        printed, adjusted = asyncio.run(closes(split, symbol)), asyncio.run(closes(plain, symbol))
        assert printed.keys() == adjusted.keys()
        for day, close in adjusted.items():
            expected = (close * scale).quantize(D("0.01")) if day < split_day else close
            assert printed[day] == expected, (symbol, day)
    # Today's price is the same: the opening price is after the split.
    assert asyncio.run(split.quote("AAPL")).price == asyncio.run(plain.quote("AAPL")).price


def test_a_walk_that_lives_through_a_split_halves_at_its_effective_date() -> None:
    clock = [NOW]
    tomorrow = NOW.date() + timedelta(days=1)
    schedule = SplitSchedule(fixed={"AAPL": {tomorrow: (2, 1)}})
    split = MockMarket(seed=5, clock=lambda: clock[0], splits=schedule)
    plain = MockMarket(seed=5, clock=lambda: clock[0], splits=SplitSchedule(fixed={}))
    for market in (split, plain):
        market.step()
    before = asyncio.run(split.quote("AAPL"))
    assert before.price == asyncio.run(plain.quote("AAPL")).price
    clock[0] = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 0, 1, tzinfo=UTC)
    changed = split.step()
    plain.step()
    after, unsplit = asyncio.run(split.quote("AAPL")), asyncio.run(plain.quote("AAPL"))
    assert "AAPL" in {q.symbol for q in changed}
    # The same step of the same walk, at half the price (to the cent).
    assert abs(after.price * 2 - unsplit.price) <= D("0.02")
    # The change is measured from the open split too: a split is no fall.
    assert abs(after.change_percent - unsplit.change_percent) < D("0.05")
    history = asyncio.run(split.daily_history("AAPL", NOW.date(), tomorrow))
    assert history == {NOW.date(): before.price, tomorrow: after.price}
