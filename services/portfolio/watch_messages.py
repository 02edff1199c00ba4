"""Wire shapes of watchlists, alerts and fired alerts, and the words a firing is told in."""

from __future__ import annotations

from decimal import Decimal

from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.alert_index import AlertRule, Condition
from services.portfolio.domain import present_price
from services.portfolio.messages import quote_message
from services.portfolio.watch_store import FiredRecord
from services.portfolio.watchlists import QuotedWatchlist
from services.runtime.timestamps import timestamp

CONDITION_TO_PROTO = {
    Condition.ABOVE: portfolio_pb2.ALERT_CONDITION_ABOVE,
    Condition.BELOW: portfolio_pb2.ALERT_CONDITION_BELOW,
    Condition.PERCENT_CHANGE: portfolio_pb2.ALERT_CONDITION_PERCENT_CHANGE,
}
PROTO_TO_CONDITION = {v: k for k, v in CONDITION_TO_PROTO.items()}


def present_percent_threshold(value: Decimal) -> str:
    """A percent as given, without trailing zeros ("-2.5", "5")."""
    text = format(value.normalize(), "f")
    return text


def present_threshold(condition: Condition, value: Decimal) -> str:
    if condition is Condition.PERCENT_CHANGE:
        return present_percent_threshold(value)
    return present_price(value)


def _window(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def firing_text(rule: AlertRule, price: Decimal, change: Decimal | None) -> str:
    """ "AAPL rose above 190.00 (190.12)"."""
    shown = present_price(price)
    if rule.condition is Condition.ABOVE:
        return f"{rule.symbol} rose above {present_price(rule.threshold)} ({shown})"
    if rule.condition is Condition.BELOW:
        return f"{rule.symbol} fell below {present_price(rule.threshold)} ({shown})"
    moved = "rose" if rule.threshold > 0 else "fell"
    measured = f", {change.quantize(Decimal('0.01')):+f}%" if change is not None else ""
    return (
        f"{rule.symbol} {moved} {present_percent_threshold(abs(rule.threshold))}% in "
        f"{_window(rule.window_seconds)} ({shown}{measured})"
    )


def watchlist_message(quoted: QuotedWatchlist) -> portfolio_pb2.Watchlist:
    record = quoted.record
    return portfolio_pb2.Watchlist(
        id=record.id,
        name=record.name,
        symbols=record.symbols,
        quotes=[quote_message(q) for q in quoted.quotes],
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
    )


def alert_message(rule: AlertRule) -> portfolio_pb2.Alert:
    percent = rule.condition is Condition.PERCENT_CHANGE
    message = portfolio_pb2.Alert(
        id=rule.id,
        symbol=rule.symbol,
        condition=CONDITION_TO_PROTO[rule.condition],
        price="" if percent else present_price(rule.threshold),
        percent=present_percent_threshold(rule.threshold) if percent else "",
        window_seconds=rule.window_seconds,
        repeat=rule.repeat,
        cooldown_seconds=rule.cooldown_seconds,
        active=rule.active,
        note=rule.note,
    )
    if rule.created_at is not None:
        message.created_at.CopyFrom(timestamp(rule.created_at))
    if rule.last_fired_at is not None:
        message.last_fired_at.CopyFrom(timestamp(rule.last_fired_at))
    return message


def fired_message(record: FiredRecord) -> portfolio_pb2.FiredAlert:
    return portfolio_pb2.FiredAlert(
        id=record.id,
        alert_id=record.alert_id,
        symbol=record.symbol,
        condition=CONDITION_TO_PROTO[record.condition],
        threshold=present_threshold(record.condition, record.threshold),
        price=present_price(record.price),
        fired_at=timestamp(record.fired_at),
        read=record.read,
        message=record.message,
    )
