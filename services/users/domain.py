"""Accounts and their rules: email normalization, password policy, roles, who may do what.

Plain Python: no I/O, no framework.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from services.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)

USER = "user"
ADMIN = "admin"
ROLES = (USER, ADMIN)

MAX_EMAIL = 254
MAX_NAME = 100
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; longer input would be silently cut
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


@dataclass
class User:
    id: str
    email: str
    name: str
    password_hash: bytes
    roles: list[str]
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


@dataclass(frozen=True)
class AccountDeletion:
    """A deleted account's tombstone: what the other services erase the account's data by."""

    user_id: str
    sequence: int
    deleted_at: datetime


@dataclass(frozen=True)
class ProfileChanges:
    name: str | None = None
    email: str | None = None
    roles: list[str] = field(default_factory=list)
    new_password: str | None = None
    current_password: str | None = None


class EmailTaken(AlreadyExists):
    reason = "EMAIL_TAKEN"

    def __init__(self) -> None:
        super().__init__("an account with this email already exists")


class InvalidCredentials(Unauthenticated):
    """The same error for an unknown email and a wrong password: nothing to probe."""

    reason = "INVALID_CREDENTIALS"

    def __init__(self) -> None:
        super().__init__("invalid email or password")


class LastAdmin(FailedPrecondition):
    reason = "LAST_ADMIN"

    def __init__(self) -> None:
        super().__init__("the last admin cannot give up the admin role or be deleted")


def normalize_email(raw: str) -> str:
    """Emails compare in one Unicode form, case-insensitively and without surrounding space:
    "josé" written with a composed or a combining accent is one address (NFKC, again after
    lower-casing, which may leave a character decomposed). Invisible format characters and
    control characters are refused: a zero-width space made a look-alike second account."""
    email = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).lower()).strip()
    if not email:
        raise InvalidArgument.field("email", "is required")
    if any(unicodedata.category(c) in ("Cf", "Cc") for c in email):
        raise InvalidArgument.field("email", "must not contain invisible or control characters")
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise InvalidArgument.field("email", "is not a valid email address")
    return email


def check_password(password: str, *, email: str, field_name: str = "password") -> None:
    if not password:
        raise InvalidArgument.field(field_name, "is required")
    problems: list[str] = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"must be at least {MIN_PASSWORD} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        problems.append(f"must be at most {MAX_PASSWORD_BYTES} bytes")
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        problems.append("must contain a letter and a digit")
    if password.strip().lower() == email:
        problems.append("must not be the email address")
    if problems:
        raise InvalidArgument(
            f"{field_name}: {'; '.join(problems)}",
            fields=[(field_name, p) for p in problems],
            reason="WEAK_PASSWORD",
        )


def clean_name(raw: str, *, email: str) -> str:
    """The name as given, spaces collapsed; without one, the part of the email before the @,
    cut to a name's length (an email's may be longer: the database refused it with a 500)."""
    name = " ".join(raw.split())
    if len(name) > MAX_NAME:
        raise InvalidArgument.field("name", f"must be at most {MAX_NAME} characters")
    return name or email.split("@", 1)[0][:MAX_NAME]


def check_roles(roles: list[str]) -> list[str]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InvalidArgument.field("roles", f"unknown role(s): {', '.join(unknown)}")
    # Every account is a user; admin is granted on top.
    return [r for r in ROLES if r in roles or r == USER]


def check_may_view(actor_id: str, actor_is_admin: bool, target_id: str) -> None:
    if actor_id != target_id and not actor_is_admin:
        raise PermissionDenied("only admins can see other accounts")


def check_may_change(
    actor_id: str, actor_is_admin: bool, target_id: str, c: ProfileChanges
) -> None:
    if actor_id != target_id and not actor_is_admin:
        raise PermissionDenied("only admins can change other accounts")
    if c.roles and not actor_is_admin:
        raise PermissionDenied("only admins can change roles")


def requested_email(raw: str | None, current: str) -> str | None:
    """The email a change of profile asks for, normalized; None when it asks for none, or for
    the one the account has (a form sent back as it was loaded changes nothing to confirm)."""
    if raw is None:
        return None
    email = normalize_email(raw)
    return None if email == current else email


def must_give_current_password(actor_id: str, target_id: str) -> bool:
    """Whether a change that could take an account from its owner (a new password, a new email,
    its deletion) must give the account's current password.

    One's own always: an access token is no password, and whoever stole one would otherwise
    lock the owner out for good (an email the owner does not know, and no reset by email; or
    no account at all). An admin's change of another account never: taking an account back is
    what an admin is there for."""
    return actor_id == target_id


def initial_roles(
    email: str, *, first_user: bool, admin_email: str | None, production: bool
) -> list[str]:
    """In development, the first account, or the one whose email is STOCKFOLIO_ADMIN_EMAIL, is
    an admin. In production registration never makes one: whoever registers first could be
    anyone; an operator runs `python -m services.users admin create` instead."""
    if production:
        return [USER]
    if email == admin_email or (first_user and admin_email is None):
        return [USER, ADMIN]
    return [USER]
