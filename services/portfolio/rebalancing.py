"""Target allocations and the trades that reach them: the rules, with no I/O.

A portfolio's targets give each symbol a weight in percent of its value; what is left of 100 is
the cash target. A plan values everything in the portfolio's currency at current prices, sells
what is over its target first and spends the proceeds, the cash and any extra cash on what is
under it. Quantities are rounded down (whole shares, or 8 places), so no suggested trade goes
past its target; when the cash cannot pay for every buy, each buy is cut by the same factor, so
the buys never cost more than the cash there is.

Trading costs (`Costs`, all 0 unless given) enter in three places: each trade pays a flat fee and
a percent of its value, to the cent as a broker charges it (a sell brings its value less its fee,
a buy costs its value and its fee);
the common factor leaves room for the fees of the buys it keeps; and a trade worth less than the
minimum, or no more than its own fee, is not suggested, its money left in cash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Context, Decimal
from functools import reduce

from services.portfolio.domain import (
    MONEY_PLACES,
    PRICE_PLACES,
    QUANTITY_PLACES,
    ZERO,
    Side,
    normalize_symbol,
    parse_decimal,
)
from services.portfolio.exact import minus, plus, times
from services.portfolio.wire_numbers import rounded
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
# Worth less than the minimum trade value given.
BELOW_MINIMUM = "BELOW_MINIMUM"
# Its fee would take all it is worth: a sell that brings nothing, a buy that is mostly fee.
FEE_EXCEEDS_VALUE = "FEE_EXCEEDS_VALUE"

FEE_PERCENT_PLACES = 4
# The most rounding a fee to the cent (half-even) adds to it.
_HALF_CENT = Decimal("0.005")
_CENT = Decimal("0.01")


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
class Costs:
    """What trading costs, in the portfolio's currency: per trade, a flat fee and a percent of
    its value; and the smallest trade worth placing."""

    per_trade: Decimal = ZERO
    percent: Decimal = ZERO  # 0 <= percent < 100
    minimum: Decimal = ZERO

    def fee(self, value: Decimal) -> Decimal:
        """The fee of a trade worth `value`, to the cent: fees shown add up to the total."""
        return rounded(
            plus(self.per_trade, times(times(value, self.percent), PERCENT)), MONEY_PLACES
        )

    @property
    def flat_bound(self) -> Decimal:
        """The most a buy's fee can be above its percent of the buy: the flat fee, and what
        rounding to the cent may add (nothing when the fee is a whole number of cents)."""
        whole_cents = not self.percent and self.per_trade % _CENT == 0
        return plus(self.per_trade, ZERO if whole_cents else _HALF_CENT)

    def refuses(self, value: Decimal) -> str:
        """Why a trade worth `value` is not worth placing ("" when it is)."""
        if value < self.minimum:
            return BELOW_MINIMUM
        fee = self.fee(value)
        if fee and fee >= value:
            return FEE_EXCEEDS_VALUE
        return ""


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
    fee: Decimal = ZERO
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
    costs: Costs = Costs()

    @property
    def cash_after(self) -> Decimal:
        moved = _sum(
            line.trade_value if line.side is Side.SELL else -line.trade_value
            for line in self.lines
            if line.side is not None
        )
        return minus(_sum([self.cash, self.extra_cash, moved]), self.total_fees)

    @property
    def total_fees(self) -> Decimal:
        return _sum(line.fee for line in self.lines)

    @property
    def total_value_after(self) -> Decimal:
        """What the portfolio is worth once the trades are made: the fees are gone."""
        return minus(self.total_value, self.total_fees)

    def weight(self, value: Decimal) -> Decimal | None:
        """`value` in percent of the total value; None when the portfolio is worth nothing."""
        return value * HUNDRED / self.total_value if self.total_value > 0 else None

    def weight_after(self, value: Decimal) -> Decimal | None:
        """`value` in percent of the value after the trades and their fees."""
        after = self.total_value_after
        return value * HUNDRED / after if after > 0 else None


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


def parse_costs(per_trade: str = "", percent: str = "", minimum: str = "") -> Costs:
    """The request's trading costs (each absent: 0); InvalidArgument names the field."""
    fee_percent = _parse_amount("feePercent", percent, FEE_PERCENT_PLACES)
    if fee_percent >= HUNDRED:
        raise InvalidArgument.field("feePercent", "must be less than 100")
    return Costs(
        per_trade=_parse_amount("feePerTrade", per_trade, PRICE_PLACES),
        percent=fee_percent,
        minimum=_parse_amount("minTradeValue", minimum, PRICE_PLACES),
    )


def _parse_amount(field: str, raw: str, places: int) -> Decimal:
    if not raw.strip():
        return ZERO
    amount = parse_decimal(field, raw, places=places)
    if amount < 0:
        raise InvalidArgument.field(field, "must not be negative")
    return amount


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
    costs: Costs = Costs(),
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
            lines[symbol] = _placed(line, Side.SELL, line.quantity, held.price, costs)
        else:
            shares = min(_shares(-gap, held.price, step), line.quantity)
            lines[symbol] = (
                _placed(line, Side.SELL, shares, held.price, costs)
                if shares
                else _without(line, ON_TARGET)
            )
    proceeds = _sum(minus(x.trade_value, x.fee) for x in lines.values() if x.side is Side.SELL)
    budget = max(_sum([cash, extra_cash, proceeds]), ZERO)
    prices = {s: _priced(lines[s]) for s in wanted}
    factor = _buy_factor(wanted, prices, budget, costs, step)
    for symbol, gap in wanted.items():
        line, price = lines[symbol], prices[symbol]
        shares = _shares(_DOWN.multiply(gap, factor), price, step)
        value = times(shares, price)
        if shares and not costs.refuses(value):
            lines[symbol] = _trade(line, Side.BUY, shares, price, costs)
            continue
        full = _shares(gap, price, step)
        if not full:
            lines[symbol] = _without(line, ON_TARGET)
        else:
            # Not worth placing even with cash enough for all of it, or the cash was short.
            lines[symbol] = _without(line, costs.refuses(times(full, price)) or NO_CASH)
    return Plan(
        cash=cash,
        extra_cash=extra_cash,
        total_value=total,
        cash_target=cash_weight(targets),
        lines=tuple(lines[s] for s in order),
        fractional=fractional,
        costs=costs,
    )


def _buy_factor(
    wanted: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
    budget: Decimal,
    costs: Costs,
    step: Decimal,
) -> Decimal:
    """The one factor every buy's gap is cut by, so that the buys placed and their fees cost
    no more than `budget`.

    Cutting each gap g by k costs at most g·k·(1 + percent) plus `flat_bound` per buy placed.
    Room is left for that much of `room` buys: the fewest for which no more than `room`
    buys are placed at the factor it leaves (more room, a smaller factor, fewer buys placed:
    the first such count is the largest factor that pays for itself). Without a flat fee the
    count does not matter, and the factor is the one the plan had before fees.
    """
    needed = _sum(wanted.values())
    if not wanted:
        return Decimal(1)
    spend = times(needed, plus(Decimal(1), times(costs.percent, PERCENT)))

    def factor_with_room(room: int) -> Decimal:
        free = minus(budget, times(costs.flat_bound, Decimal(room)))
        if free <= 0:
            return ZERO
        return Decimal(1) if spend <= free else _DOWN.divide(free, spend)

    if not costs.flat_bound:
        return factor_with_room(0)
    for room in range(len(wanted) + 1):
        factor = factor_with_room(room)
        placed = sum(
            1
            for symbol, gap in wanted.items()
            if _worth_placing(_DOWN.multiply(gap, factor), prices[symbol], step, costs)
        )
        if placed <= room:
            return factor
    return ZERO  # not reached: with room for every buy, no more than every buy is placed


def _worth_placing(amount: Decimal, price: Decimal, step: Decimal, costs: Costs) -> bool:
    shares = _shares(amount, price, step)
    return bool(shares) and not costs.refuses(times(shares, price))


def _priced(line: Line) -> Decimal:
    assert line.price is not None  # only priced lines want money
    return line.price


def _placed(line: Line, side: Side, shares: Decimal, price: Decimal, costs: Costs) -> Line:
    """A sell, unless it is not worth placing."""
    refused = costs.refuses(times(shares, price))
    return _without(line, refused) if refused else _trade(line, side, shares, price, costs)


def _trade(line: Line, side: Side, shares: Decimal, price: Decimal, costs: Costs) -> Line:
    value = times(shares, price)
    return replace(line, side=side, trade_quantity=shares, trade_value=value, fee=costs.fee(value))


def _without(line: Line, reason: str) -> Line:
    return replace(line, reason=reason)
