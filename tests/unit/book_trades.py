"""Trades for the portfolio book's unit tests: made by the day (`buy`, `sell`, `deposit`, ...),
and the hypothesis strategies that draw histories of them (`share_histories`, `mixed_histories`,
turned into trades a book accepts by `valid_trades`) and split ratios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from hypothesis import strategies as st

from services.portfolio.domain import Side, Trade, parse_trade

D = Decimal
NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
DAY0 = datetime(2024, 1, 2, 15, tzinfo=UTC)


def at(days: int, minutes: int = 0) -> datetime:
    return DAY0 + timedelta(days=days, minutes=minutes)


def trade(
    side: Side, symbol: str, quantity: str, price: str = "", fees: str = "", *, day: int = 0
) -> Trade:
    return parse_trade(side, symbol, quantity, price, fees, at(day), now=NOW, sequence=day)


def buy(symbol: str, quantity: str, price: str, fees: str = "0", *, day: int = 0) -> Trade:
    return trade(Side.BUY, symbol, quantity, price, fees, day=day)


def sell(symbol: str, quantity: str, price: str, fees: str = "0", *, day: int = 0) -> Trade:
    return trade(Side.SELL, symbol, quantity, price, fees, day=day)


def deposit(amount: str, *, day: int = 0) -> Trade:
    return trade(Side.DEPOSIT, "", amount, day=day)


def withdraw(amount: str, *, day: int = 0) -> Trade:
    return trade(Side.WITHDRAWAL, "", amount, day=day)


def dividend(symbol: str, shares: str, per_share: str, *, day: int = 0) -> Trade:
    return trade(Side.DIVIDEND, symbol, shares, per_share, day=day)


def plain(value: Decimal) -> str:
    """A decimal as the wire writes it: plain notation, never an exponent."""
    return format(value, "f")


quantities = st.decimals(min_value=D("0.00000001"), max_value=D(10_000), places=8)
prices = st.decimals(min_value=D("0.01"), max_value=D(5_000), places=6)
fee_amounts = st.decimals(min_value=D(0), max_value=D(50), places=2)
fractions = st.decimals(min_value=D("0.01"), max_value=D(1), places=2)
buy_steps = st.tuples(st.just("buy"), quantities, prices, fee_amounts)
sell_steps = st.tuples(st.just("sell"), fractions, prices, fee_amounts)
cash_steps = st.tuples(st.sampled_from(["deposit", "withdraw", "dividend"]), fractions, prices)


def valid_trades(steps: list[tuple[object, ...]]) -> list[Trade]:
    """Turn drawn steps into trades that a book accepts: sells and withdrawals are fractions of
    what is held at that moment."""
    held = D(0)
    cash = D(0)
    trades: list[Trade] = []
    for day, step in enumerate(steps):
        kind = step[0]
        made: Trade | None = None
        if kind == "buy":
            _, quantity, price, fees = step
            assert isinstance(quantity, Decimal)
            assert isinstance(price, Decimal)
            assert isinstance(fees, Decimal)
            made = buy("AAPL", plain(quantity), plain(price), plain(fees), day=day)
        elif kind == "sell":
            _, fraction, price, fees = step
            assert isinstance(fraction, Decimal)
            assert isinstance(price, Decimal)
            assert isinstance(fees, Decimal)
            quantity = (held * fraction).quantize(D("0.00000001"), rounding=ROUND_DOWN)
            if quantity > 0:
                made = sell("AAPL", plain(quantity), plain(price), plain(fees), day=day)
        else:
            _, fraction, amount = step
            assert isinstance(fraction, Decimal)
            assert isinstance(amount, Decimal)
            if kind == "deposit":
                made = deposit(plain(amount), day=day)
            elif kind == "dividend":
                made = dividend("AAPL", "1", plain(amount), day=day)
            elif (share := (cash * fraction).quantize(D("0.01"), rounding=ROUND_DOWN)) > 0:
                made = withdraw(plain(share), day=day)
        if made is not None:
            trades.append(made)
            held += made.quantity if made.side is Side.BUY else 0
            held -= made.quantity if made.side is Side.SELL else 0
            cash = max(D(0), cash + made.cash_change)
    return trades


# Every history opens with a buy, so the position exists whatever follows.
share_histories = st.tuples(buy_steps, st.lists(st.one_of(buy_steps, sell_steps), max_size=25)).map(
    lambda drawn: [drawn[0], *drawn[1]]
)
mixed_histories = st.tuples(
    buy_steps, st.lists(st.one_of(buy_steps, sell_steps, cash_steps), max_size=25)
).map(lambda drawn: [drawn[0], *drawn[1]])
ratios = st.one_of(
    st.sampled_from([D("1.5"), D(2), D(3), D("0.1"), D("0.125"), D("0.35"), D("1.05")]),
    st.decimals(min_value=D("0.0001"), max_value=D(50), places=4),
)
