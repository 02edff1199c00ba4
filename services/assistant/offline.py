"""The offline provider: no model and no key. It says it is offline and still answers simple
portfolio questions ("what is my portfolio worth?", "what do I hold?") through the same tools."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from services.assistant.domain import Usage
from services.assistant.providers import ProviderEvent, RoundEnd, TextDelta, ToolUse

OFFLINE_NOTICE = (
    "I'm running offline (no CLAUDE_API_KEY is configured), so I can only answer simple "
    'questions about your portfolios, such as "what is my portfolio worth?" or '
    '"what do I hold?".'
)

_WORTH = re.compile(r"\b(worth|value|valued|total|balance|how much)\b", re.IGNORECASE)
_HOLD = re.compile(r"\b(hold|holding|holdings|own|positions?|stocks?|shares)\b", re.IGNORECASE)


def _last_user_turn(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    for turn in reversed(messages):
        if turn.get("role") == "user":
            return list(turn.get("content") or [])
    return []


def _money(text: object) -> str:
    try:
        return f"{Decimal(str(text)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(text)


def _quantity(text: object) -> str:
    try:
        return format(Decimal(str(text)).normalize(), "f")
    except (InvalidOperation, ValueError):
        return str(text)


def _totals(portfolios: list[dict[str, Any]]) -> dict[str, Decimal]:
    # Summed per currency: yen and dollars added together are no figure at all.
    totals: dict[str, Decimal] = {}
    for p in portfolios:
        currency = str(p.get("currency") or "")
        totals[currency] = totals.get(currency, Decimal(0)) + Decimal(str(p.get("totalValue") or 0))
    return totals


def offline_answer(
    question: str,
    portfolios: list[dict[str, Any]],
    *,
    count: int | None = None,
    totals: dict[str, Any] | None = None,
) -> str:
    """What the offline assistant says once it has read the caller's portfolios: `portfolios`
    are those listed, `count` how many there are and `totals` the value of them all per
    currency (list_portfolios' result; without them, the listed ones are all there are)."""
    if not portfolios:
        return f"{OFFLINE_NOTICE}\n\nYou have no portfolios yet."
    lines = [OFFLINE_NOTICE, ""]
    more = max(0, (count or 0) - len(portfolios))
    if _WORTH.search(question):
        every = _totals(portfolios) if totals is None else totals
        worth = " and ".join(f"{_money(v)} {c}".strip() for c, v in sorted(every.items()))
        lines.append(f"Your portfolios are worth {worth} in total:")
        for p in portfolios:
            lines.append(
                f"- {p.get('name', '?')}: {_money(p.get('totalValue', '0'))} "
                f"{p.get('currency', '')} (cash {_money(p.get('cash', '0'))}, "
                f"gain/loss {_money(p.get('totalGainLoss', '0'))})".replace("  ", " ")
            )
    else:
        lines.append("You hold:")
        for p in portfolios:
            positions = [x for x in p.get("positions", []) if Decimal(str(x["quantity"])) != 0]
            if not positions:
                lines.append(f"- {p.get('name', '?')}: no open positions")
                continue
            held = ", ".join(
                f"{_quantity(x['quantity'])} {x['symbol']} "
                f"(worth {_money(x.get('marketValue', '0'))})"
                for x in positions
            )
            lines.append(f"- {p.get('name', '?')}: {held}")
    if more:
        lines.append(f"- and {more} more portfolio{'s' if more > 1 else ''}, not listed here")
    return "\n".join(lines)


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


class OfflineProvider:
    """No model: reads the portfolios through the same tools and answers from them."""

    offline = True

    async def models(self) -> list[tuple[str, str]]:
        return []

    async def stream(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> AsyncIterator[ProviderEvent]:
        turn = _last_user_turn(messages)
        results = [b for b in turn if b.get("type") == "tool_result"]
        question = next(
            (
                t["text"]
                for m in reversed(messages)
                if m.get("role") == "user"
                for t in m.get("content", [])
                if t.get("type") == "text"
            ),
            "",
        )
        if not results and (_WORTH.search(question) or _HOLD.search(question)):
            yield ToolUse(f"offline_{len(messages)}", "list_portfolios", {})
            yield RoundEnd("tool_use", Usage())
            return
        if results:
            data = json.loads(results[-1].get("content") or "{}")
            if results[-1].get("is_error"):
                text = f"{OFFLINE_NOTICE}\n\nI could not read your portfolios: {data.get('error')}"
            else:
                text = offline_answer(
                    question,
                    list(data.get("portfolios", [])),
                    count=data.get("count"),
                    totals=data.get("totalValueByCurrency"),
                )
        else:
            text = OFFLINE_NOTICE
        for word in _words(text):
            yield TextDelta(word)
        yield RoundEnd("end_turn", Usage())

    async def close(self) -> None:
        return None
