"""What the service keeps beside the pure book: a portfolio's own record and the rules for its
fields, and a trade as recorded (its portfolio, when it was recorded, where its price came from).

Plain Python: no I/O, no framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from services.portfolio.currencies import TradeFx, require_currency
from services.portfolio.domain import CashPolicy, Split, Trade
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from services.runtime.text_fields import trimmed_text

MAX_NAME = 100
MAX_DESCRIPTION = 1000
DEFAULT_CURRENCY = "USD"
_CURRENCY = re.compile(r"[A-Z]{3}")


def check_room(held: int, cap: int, what: str, *, reason: str, then: str = "") -> None:
    """Refuse one more when `held` reaches `cap` (422): "a user keeps at most 100 portfolios"."""
    if held >= cap:
        raise FailedPrecondition(
            f"a user keeps at most {cap} {what}" + (f": {then}" if then else ""), reason=reason
        )


class PortfolioKind(StrEnum):
    """Values are the wire's short enum names."""

    TRACKING = "tracking"
    PAPER = "paper"

    @property
    def policy(self) -> CashPolicy:
        """Paper trading spends only the cash it has; tracking records what really happened."""
        return CashPolicy.REQUIRE_CASH if self is PortfolioKind.PAPER else CashPolicy.FUND_SHORTFALL


@dataclass
class Portfolio:
    id: str
    user_id: str
    name: str
    description: str
    base_currency: str
    kind: PortfolioKind
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RecordedTrade:
    """A trade as stored. `price_source` names the market that priced it ("mock",
    "alphavantage") when the caller gave no price; it is "" otherwise. `order_id`: the order
    it filled ("" for a trade recorded by hand)."""

    portfolio_id: str
    trade: Trade
    created_at: datetime
    price_source: str = ""
    order_id: str = ""
    # The trade as given in its trading currency, and the rate of its date; None for trades
    # recorded before currencies (in their portfolio's currency).
    fx: TradeFx | None = None


@dataclass(frozen=True)
class RecordedSplit:
    """A split as a portfolio stored it: `split.ratio` new shares (a whole number) for every
    `split.of` old ones, from the start of its day."""

    id: str
    portfolio_id: str
    split: Split
    created_at: datetime


@dataclass(frozen=True)
class SplitEffect:
    """A recorded split and what it did to the portfolio's holding of its symbol."""

    recorded: RecordedSplit
    quantity_before: Decimal
    quantity_after: Decimal
    cash_in_lieu: Decimal


def clean_name(raw: str) -> str:
    return trimmed_text("name", raw, most=MAX_NAME, if_empty="is required")


def clean_description(raw: str) -> str:
    return trimmed_text("description", raw, most=MAX_DESCRIPTION)


def clean_currency(raw: str) -> str:
    """A three-letter ISO 4217 code in upper case; empty means USD."""
    code = raw.strip().upper()
    if not code:
        return DEFAULT_CURRENCY
    if not _CURRENCY.fullmatch(code):
        raise InvalidArgument.field("currency", "must be a three-letter code such as USD")
    # A code no rate source here can price would leave the portfolio unvaluable.
    return require_currency(code)


def require_portfolio_id(portfolio_id: str, field: str = "portfolioId") -> str:
    if not portfolio_id.strip():
        raise InvalidArgument.field(field, "is required")
    return portfolio_id.strip()


PORTFOLIO_NOT_FOUND = "PORTFOLIO_NOT_FOUND"


def portfolio_not_found(portfolio_id: str) -> NotFound:
    """Also the answer for another user's portfolio: its existence is not disclosed."""
    return NotFound(f"portfolio {portfolio_id} not found", reason=PORTFOLIO_NOT_FOUND)
