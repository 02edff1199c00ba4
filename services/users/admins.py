"""Making an admin from the command line: the only way production gets its first one.

The operator runs `python -m services.users admin create` where the service runs (same
environment, same database); nothing here is reachable over the network.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.runtime.db import Database
from services.runtime.errors import NotFound
from services.users.domain import (
    ADMIN,
    USER,
    User,
    check_password,
    check_roles,
    clean_name,
    normalize_email,
)
from services.users.passwords import PasswordHasher
from services.users.repository import UserRepository


async def find_user(db: Database, email: str) -> User | None:
    async with db.reading() as tx:
        return await UserRepository(tx).by_email(normalize_email(email))


async def promote(db: Database, email: str) -> tuple[User, bool]:
    """Give an existing account the admin role; the account, and whether it changed. Its
    current tokens keep their old roles: the admin role takes effect at its next login."""
    email = normalize_email(email)
    async with db.transaction() as tx:
        repo = UserRepository(tx)
        user = await repo.by_email(email)
        if user is None:
            raise NotFound(f"no account has the email {email}")
        # An admin now exists: in development, the next registration is no longer the first.
        await repo.claim("first_user", user.id)
        if user.is_admin:
            return user, False
        user.roles = check_roles([*user.roles, ADMIN])
        user.updated_at = datetime.now(UTC)
        await repo.save(user)
    return user, True


async def create_admin(
    db: Database, hasher: PasswordHasher, email: str, password: str, name: str = ""
) -> User:
    """A new account with the admin role (EmailTaken when the email is already used)."""
    email = normalize_email(email)
    check_password(password, email=email)
    name = clean_name(name, email=email)
    hashed = await hasher.hash(password)
    now = datetime.now(UTC)
    user = User(str(uuid.uuid4()), email, name, hashed, [USER, ADMIN], now, now)
    async with db.transaction() as tx:
        repo = UserRepository(tx)
        await repo.add(user)
        await repo.claim("first_user", user.id)
    return user
