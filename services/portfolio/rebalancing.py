"""Target allocations and the trades that reach them: the rules, with no I/O.

A portfolio's targets give each symbol a weight in percent of its value; what is left of 100 is
the cash target. A plan values everything in the portfolio's currency at current prices, sells
what is over its target first and spends the proceeds, the cash and any extra cash on what is
under it. Quantities are rounded down (whole shares, or 8 places), so no suggested trade goes
past its target; when the cash cannot pay for every buy, each buy is cut by the same factor, so
the buys never cost more than the cash there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Context, Decimal
from functools import reduce

from services.portfolio.domain import (
    QUANTITY_PLACES,
    ZERO,
    Side,
    normalize_symbol,
    parse_decimal,
)
from services.portfolio.exact import minus, plus, times
from services.runtime.errors import InvalidArgument

HUNDRED = Decimal(100)
PERCENT = Decimal("0.01")
MAX_TARGETS = 100
WEIGHT_PLACES = 4
WEIGHT_RULE = "must be a percentage greater than 0 and at most 100, with at most 4 decimal places"
# Divisions that feed a rounding down are themselves rounded down: a quotient rounded up to the
# next whole share would buy one share more than the money pays for.
_DOWN = Context(prec=40, rounding=ROUND_DOWN)
WHOLE = Decimal(1)
FRACTION = Decimal(1).scaleb(-QUANTITY_PLACES)

# Why a line suggests no trade.
NO_PRICE = "NO_PRICE"
ON_TARGET = "ON_TARGET"
NO_CASH = "NO_CASH"
# No allocation is set: nothing to aim at (not "all in cash", which would sell everything).
NO_TARGETS = "NO_TARGETS"


@dataclass(frozen=True)
class Target:
    symbol: str
    weight: Decimal  # percent


@dataclass(frozen=True)
class Holding:
    """What a portfolio holds of one symbol, valued as its positions are."""

    symbol: str
    quantity: Decimal
    value: Decimal  # in the portfolio's currency
    price: Decimal | None  # the current price in the portfolio's currency; None: unknown


@dataclass(frozen=True)
class Line:
    symbol: str
    price: Decimal | None
    quantity: Decimal
    value: Decimal
    target_weight: Decimal
    side: Side | None = None
    trade_quantity: Decimal = ZERO
    trade_value: Decimal = ZERO
    reason: str = ""

    @property
    def value_after(self) -> Decimal:
        if self.side is Side.BUY:
            return plus(self.value, self.trade_value)
        return minus(self.value, self.trade_value)


@dataclass(frozen=True)
class Plan:
    cash: Decimal  # the portfolio's cash
    extra_cash: Decimal
    total_value: Decimal  # holdings + cash + extra cash
    cash_target: Decimal  # percent
    lines: tuple[Line, ...]
    fractional: bool

    @property
    def cash_after(self) -> Decimal:
        moved = _sum(
            line.trade_value if line.side is Side.SELL else -line.trade_value
            for line in self.lines
            if line.side is not None
        )
        return _sum([self.cash, self.extra_cash, moved])

    def weight(self, value: Decimal) -> Decimal | None:
        """`value` in percent of the total value; None when the portfolio is worth nothing."""
        return value * HUNDRED / self.total_value if self.total_value > 0 else None


def clean_targets(raw: Sequence[tuple[str, str]]) -> tuple[Target, ...]:
    """(symbol, weight) pairs as given: upper-case symbols, each once, weights in (0, 100]
    adding up to at most 100. InvalidArgument names the row (`targets[2].weight`)."""
    if len(raw) > MAX_TARGETS:
        raise InvalidArgument.field("targets", f"must be at most {MAX_TARGETS}")
    targets: list[Target] = []
    first: dict[str, int] = {}
    for row, (symbol_text, weight_text) in enumerate(raw):
        at = f"targets[{row}]"
        try:
            symbol = normalize_symbol(symbol_text)
        except InvalidArgument as problem:
            raise InvalidArgument.field(f"{at}.symbol", problem.fields[0][1]) from None
        if symbol in first:
            raise InvalidArgument.field(
                f"{at}.symbol", f"lists {symbol} again (first at targets[{first[symbol]}])"
            )
        first[symbol] = row
        try:
            weight = parse_decimal(f"{at}.weight", weight_text, places=WEIGHT_PLACES)
        except InvalidArgument:
            raise InvalidArgument.field(f"{at}.weight", WEIGHT_RULE) from None
        if not ZERO < weight <= HUNDRED:
            raise InvalidArgument.field(f"{at}.weight", WEIGHT_RULE)
        targets.append(Target(symbol, weight))
    total = sum((t.weight for t in targets), ZERO)
    if total > HUNDRED:
        raise InvalidArgument.field(
            "targets", f"weights add up to {format(total, 'f')}, more than 100"
        )
    return tuple(targets)


def cash_weight(targets: Sequence[Target]) -> Decimal:
    return HUNDRED - sum((t.weight for t in targets), ZERO)


def parse_extra_cash(raw: str) -> Decimal:
    if not raw.strip():
        return ZERO
    extra = parse_decimal("cash", raw, places=QUANTITY_PLACES)
    if extra < 0:
        raise InvalidArgument.field("cash", "must not be negative")
    return extra


def _sum(values: Iterable[Decimal]) -> Decimal:
    return reduce(plus, values, ZERO)


def _shares(amount: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """The most shares at `price` that `amount` pays for, in steps of `step`."""
    return _DOWN.divide(amount, price).quantize(step, rounding=ROUND_DOWN)


def plan(
    targets: Sequence[Target],
    holdings: Mapping[str, Holding],
    cash: Decimal,
    *,
    extra_cash: Decimal = ZERO,
    fractional: bool = False,
) -> Plan:
    """The trades that bring `holdings` nearest their targets without passing them."""
    step = FRACTION if fractional else WHOLE
    total = _sum([cash, extra_cash, *(h.value for h in holdings.values())])
    weights = {t.symbol: t.weight for t in targets}
    untargeted = sorted(s for s in holdings if s not in weights)
    order = [t.symbol for t in targets] + untargeted
    lines: dict[str, Line] = {}
    wanted: dict[str, Decimal] = {}  # the money each buy needs to reach its target
    for symbol in order:
        held = holdings.get(symbol)
        target = weights.get(symbol, ZERO)
        line = Line(
            symbol=symbol,
            price=held.price if held else None,
            quantity=held.quantity if held else ZERO,
            value=held.value if held else ZERO,
            target_weight=target,
        )
        lines[symbol] = line
        if not targets:
            lines[symbol] = _without(line, NO_TARGETS)
            continue
        if held is None or held.price is None or held.price <= 0:
            lines[symbol] = _without(line, NO_PRICE)
            continue
        gap = minus(times(times(total, target), PERCENT), line.value)
        if gap > 0:
            wanted[symbol] = gap
        elif target == 0:
            # Sold off whole, fractions of a share included.
            lines[symbol] = _trade(line, Side.SELL, line.quantity, held.price)
        else:
            shares = min(_shares(-gap, held.price, step), line.quantity)
            lines[symbol] = (
                _trade(line, Side.SELL, shares, held.price) if shares else _without(line, ON_TARGET)
            )
    proceeds = _sum(x.trade_value for x in lines.values() if x.side is Side.SELL)
    budget = max(_sum([cash, extra_cash, proceeds]), ZERO)
    needed = _sum(wanted.values())
    factor = Decimal(1) if needed <= budget else _DOWN.divide(budget, needed)
    for symbol, gap in wanted.items():
        line = lines[symbol]
        assert line.price is not None  # only priced lines want money
        shares = _shares(_DOWN.multiply(gap, factor), line.price, step)
        if shares:
            lines[symbol] = _trade(line, Side.BUY, shares, line.price)
        else:
            short = _shares(gap, line.price, step) > 0
            lines[symbol] = _without(line, NO_CASH if short else ON_TARGET)
    return Plan(
        cash=cash,
        extra_cash=extra_cash,
        total_value=total,
        cash_target=cash_weight(targets),
        lines=tuple(lines[s] for s in order),
        fractional=fractional,
    )


def _trade(line: Line, side: Side, shares: Decimal, price: Decimal) -> Line:
    return replace(line, side=side, trade_quantity=shares, trade_value=times(shares, price))


def _without(line: Line, reason: str) -> Line:
    return replace(line, reason=reason)
