"""Emails in one Unicode form: every stored email as normalize_email now writes it (NFKC, lower
case, without invisible format characters), where that is no other account's already. Two
accounts that only differed by such a form keep their emails as they were (nothing is merged),
and so does an email whose new form would be no address (or too long for the column); their
owners sign in with the exact form they registered with (Accounts.login looks that up first).

Revision ID: 0002_normalized_emails
Revises: 0001
Create Date: 2026-12-06
"""

import re
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_normalized_emails"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The address rule as services/users/domain has it on the day of this migration.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_EMAIL = 254


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
        # A form that is no address (NFKC made "\ufe6b" an "@", or "\u337f" four letters
        # past the column's length) is not written: the account keeps the form it has.
        valid = len(wanted) <= MAX_EMAIL and _EMAIL.match(wanted) is not None
        if wanted != email and wanted not in taken and valid:
            connection.execute(users.update().where(users.c.id == user_id).values(email=wanted))
            taken.discard(email)
            taken.add(wanted)


def downgrade() -> None:
    pass  # the old forms are not kept: each still names its account
