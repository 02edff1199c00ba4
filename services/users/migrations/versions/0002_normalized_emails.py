"""Emails in one Unicode form: every stored email as normalize_email now writes it (NFKC, lower
case, without invisible format characters), where that is no other account's already. Two
accounts that only differed by such a form keep their emails as they were (nothing is merged);
their owners sign in with the exact form they registered with.

Revision ID: 0002_normalized_emails
Revises: 0001
Create Date: 2026-12-06
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_normalized_emails"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _normalized(email: str) -> str:
    # As services/users/domain.normalize_email on the day of this migration (kept here: a
    # migration must not change when the code does).
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).lower())
    return "".join(c for c in folded if unicodedata.category(c) not in ("Cf", "Cc")).strip()


def upgrade() -> None:
    connection = op.get_bind()
    users = sa.table("users", sa.column("id", sa.String), sa.column("email", sa.String))
    rows = connection.execute(sa.select(users.c.id, users.c.email)).all()
    taken = {email for _, email in rows}
    for user_id, email in rows:
        wanted = _normalized(email)
        if wanted != email and wanted not in taken:
            connection.execute(users.update().where(users.c.id == user_id).values(email=wanted))
            taken.discard(email)
            taken.add(wanted)


def downgrade() -> None:
    pass  # the old forms are not kept: each still names its account
