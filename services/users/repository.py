"""Loads and saves accounts, sessions and refresh tokens; hides SQLAlchemy from the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.queries import contains_text, fetch_page, one_writer_at_a_time
from services.users.domain import AccountDeletion, EmailTaken, User
from services.users.orm import account_deletions, bootstrap, refresh_tokens, sessions, users


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _user(row: Any) -> User:
    created, updated = _utc(row.created_at), _utc(row.updated_at)
    assert created is not None and updated is not None
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        password_hash=bytes(row.password_hash),
        roles=[r for r in row.roles.split(",") if r],
        created_at=created,
        updated_at=updated,
        last_login=_utc(row.last_login),
    )


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: str, *, lock: bool = False) -> User | None:
        """The account; with `lock`, locked until the transaction ends (a change of it, or a
        login's session, made in order with any other)."""
        query = select(users).where(users.c.id == user_id)
        if lock:
            query = query.with_for_update()
        row = (await self._session.execute(query)).first()
        return _user(row) if row else None

    async def touch_login(self, user_id: str, when: datetime) -> None:
        """Stamp a login, and only that: the rest of the row is whatever it is now."""
        await self._session.execute(
            update(users).where(users.c.id == user_id).values(last_login=when)
        )

    async def by_email(self, email: str) -> User | None:
        row = (await self._session.execute(select(users).where(users.c.email == email))).first()
        return _user(row) if row else None

    async def add(self, user: User) -> None:
        try:
            async with self._session.begin_nested():
                await self._session.execute(insert(users).values(_columns(user)))
        except IntegrityError:
            raise EmailTaken() from None

    async def save(self, user: User) -> None:
        values = _columns(user)
        del values["id"]
        try:
            async with self._session.begin_nested():
                await self._session.execute(
                    update(users).where(users.c.id == user.id).values(values)
                )
        except IntegrityError:
            raise EmailTaken() from None

    async def remove(self, user_id: str) -> bool:
        result = await self._session.execute(delete(users).where(users.c.id == user_id))
        return bool(getattr(result, "rowcount", 0))

    async def count_admins(self) -> int:
        """Counted for the last-admin rule: other writers that count wait until this
        transaction ends (two admins stepping down at once each saw the other)."""
        await one_writer_at_a_time(self._session, "admins")
        query = select(func.count()).select_from(users).where(users.c.roles.like("%admin%"))
        return int((await self._session.execute(query)).scalar_one())

    async def page(self, *, offset: int, limit: int, q: str = "") -> tuple[list[User], int]:
        query = select(users).order_by(users.c.created_at, users.c.id)
        if q:
            query = query.where(
                or_(contains_text(users.c.email, q), contains_text(users.c.name, q))
            )
        rows, total = await fetch_page(self._session, query, offset=offset, limit=limit)
        return [_user(r) for r in rows], total

    async def claim(self, name: str, value: str) -> bool:
        """Insert a one-time fact; True for the caller that inserted it first."""
        dialect = self._session.bind.dialect.name if self._session.bind else ""
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = (
            module.insert(bootstrap)
            .values(name=name, value=value)
            .on_conflict_do_nothing()
            .returning(bootstrap.c.name)
        )
        return (await self._session.execute(statement)).first() is not None


def _columns(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "password_hash": user.password_hash,
        "roles": ",".join(user.roles),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "last_login": user.last_login,
    }


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def open(
        self, *, session_id: str, user_id: str, now: datetime, expires: datetime, address: str
    ) -> None:
        await self._session.execute(
            insert(sessions).values(
                id=session_id,
                user_id=user_id,
                created_at=now,
                expires_at=expires,
                client_address=address[:64],
            )
        )

    async def ends_at(self, session_id: str) -> datetime | None:
        """When a session ends (or ended) by itself; None for one revoked, or never opened."""
        query = select(sessions.c.expires_at).where(
            sessions.c.id == session_id, sessions.c.revoked_at.is_(None)
        )
        return _utc((await self._session.execute(query)).scalar_one_or_none())

    async def user_of(self, session_id: str) -> str | None:
        query = select(sessions.c.user_id).where(sessions.c.id == session_id)
        found = (await self._session.execute(query)).scalar_one_or_none()
        return str(found) if found is not None else None

    async def revoke(self, session_id: str, now: datetime, reason: str) -> bool:
        result = await self._session.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return bool(getattr(result, "rowcount", 0))

    async def revoke_all(
        self, user_id: str, now: datetime, reason: str, *, keep: str | None = None
    ) -> list[str]:
        """Revoke a user's live sessions (but `keep`); returns the revoked ids."""
        query = select(sessions.c.id).where(
            sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)
        )
        if keep is not None:
            query = query.where(sessions.c.id != keep)
        ids = [str(i) for i in (await self._session.execute(query)).scalars().all()]
        if ids:
            await self._session.execute(
                update(sessions)
                .where(sessions.c.id.in_(ids))
                .values(revoked_at=now, revoked_reason=reason)
            )
        return ids

    async def issue_refresh(
        self, *, token_id: str, session_id: str, now: datetime, expires: datetime
    ) -> None:
        await self._session.execute(
            insert(refresh_tokens).values(
                id=token_id, session_id=session_id, issued_at=now, expires_at=expires
            )
        )

    async def spend_refresh(self, token_id: str, session_id: str, now: datetime) -> bool:
        """Mark a refresh token used. Atomic: of two concurrent spends, exactly one wins."""
        result = await self._session.execute(
            update(refresh_tokens)
            .where(
                refresh_tokens.c.id == token_id,
                refresh_tokens.c.session_id == session_id,
                refresh_tokens.c.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return bool(getattr(result, "rowcount", 0))


class DeletionRepository:
    """The tombstones of deleted accounts, numbered in the order their deletions commit."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(self, user_id: str, when: datetime) -> int:
        """The deletion of `user_id`, in the transaction that deletes the account; its number.

        Deletions are numbered one at a time (the transaction holds the numbering until it
        ends), so numbers are given in commit order: a reader that has seen one has seen every
        lower one, which numbers drawn from a sequence would not promise (a transaction that
        drew 5 can commit after one that drew 6)."""
        await one_writer_at_a_time(self._session, "account-deletions")
        last = (
            await self._session.execute(select(func.max(account_deletions.c.sequence)))
        ).scalar()
        sequence = int(last or 0) + 1
        await self._session.execute(
            insert(account_deletions).values(sequence=sequence, user_id=user_id, deleted_at=when)
        )
        return sequence

    async def after(self, sequence: int, limit: int) -> list[AccountDeletion]:
        t = account_deletions.c
        query = select(t.user_id, t.sequence, t.deleted_at).where(t.sequence > sequence)
        rows = await self._session.execute(query.order_by(t.sequence).limit(limit))
        return [AccountDeletion(r.user_id, int(r.sequence), r.deleted_at) for r in rows]

    async def last(self) -> int:
        found = await self._session.execute(select(func.max(account_deletions.c.sequence)))
        return int(found.scalar() or 0)
