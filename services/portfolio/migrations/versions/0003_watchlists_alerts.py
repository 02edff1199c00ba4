"""Watchlists and price alerts (placeholder: its owner fills it in).

Revision ID: 0003_watchlists_alerts
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

revision: str = "0003_watchlists_alerts"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
