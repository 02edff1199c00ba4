"""Loads and replaces portfolios' target allocations; hides SQLAlchemy from the rest. The
caller has checked (and, to replace, locked) the portfolio's owner."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.orm import portfolio_targets
from services.portfolio.rebalancing import Target


class TargetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def of(self, portfolio_id: str) -> tuple[Target, ...]:
        """The portfolio's targets in the order they were given."""
        query = (
            select(portfolio_targets.c.symbol, portfolio_targets.c.weight)
            .where(portfolio_targets.c.portfolio_id == portfolio_id)
            .order_by(portfolio_targets.c.position)
        )
        rows = (await self._session.execute(query)).all()
        return tuple(Target(row.symbol, row.weight) for row in rows)

    async def replace(self, portfolio_id: str, targets: Sequence[Target]) -> None:
        await self._session.execute(
            delete(portfolio_targets).where(portfolio_targets.c.portfolio_id == portfolio_id)
        )
        if targets:
            await self._session.execute(
                insert(portfolio_targets),
                [
                    {
                        "portfolio_id": portfolio_id,
                        "symbol": t.symbol,
                        "weight": t.weight,
                        "position": i,
                    }
                    for i, t in enumerate(targets)
                ],
            )
