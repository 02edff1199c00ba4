"""The provider tokens each user spent per UTC day, in a ledger of their own (the daily budget
was rebuilt from the messages' counts, which deleting a session removed), filled from the
messages stored so far.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_token_usage",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", name="pk_chat_token_usage"),
    )
    messages = sa.table(
        "chat_messages",
        sa.column("user_id", sa.String),
        sa.column("input_tokens", sa.Integer),
        sa.column("output_tokens", sa.Integer),
        sa.column("created_at", sa.DateTime),
    )
    usage = sa.table(
        "chat_token_usage",
        sa.column("user_id", sa.String),
        sa.column("day", sa.Date),
        sa.column("tokens", sa.BigInteger),
    )
    # A message's UTC day (SQLite stores UTC times as text, PostgreSQL with their time zone).
    if op.get_bind().dialect.name == "postgresql":
        day: sa.ColumnElement[object] = sa.cast(
            sa.func.timezone("UTC", messages.c.created_at), sa.Date
        )
    else:
        day = sa.func.date(messages.c.created_at)
    # As bigints: two of the old Integer columns' values may add up past an int4.
    tokens = sa.cast(messages.c.input_tokens, sa.BigInteger) + sa.cast(
        messages.c.output_tokens, sa.BigInteger
    )
    spent = (
        sa.select(messages.c.user_id, day, sa.func.sum(tokens))
        .where(tokens > 0)
        .group_by(messages.c.user_id, day)
    )
    op.execute(usage.insert().from_select(["user_id", "day", "tokens"], spent))


def downgrade() -> None:
    op.drop_table("chat_token_usage")
