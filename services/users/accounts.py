"""The users service's use cases: each one transaction, domain rules in between."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.auth import (
    SessionExpired,
    SessionRevoked,
    SessionState,
    TokenCodec,
    TtlMemo,
)
from services.runtime.context import Identity
from services.runtime.db import Database
from services.runtime.errors import InvalidArgument, NotFound, Unauthenticated
from services.runtime.pagination import Page
from services.users.budgets import Budgets
from services.users.config import UsersConfig
from services.users.domain import (
    AccountDeletion,
    EmailTaken,
    InvalidCredentials,
    LastAdmin,
    ProfileChanges,
    User,
    check_may_change,
    check_may_view,
    check_password,
    check_roles,
    clean_name,
    initial_roles,
    must_give_current_password,
    normalize_email,
    requested_email,
)
from services.users.guard import LoginGuard
from services.users.passwords import PasswordHasher
from services.users.repository import DeletionRepository, SessionRepository, UserRepository
from services.users.sessions import LocalSessionChecker

# Deletions listed at once when the caller names no limit, and at most.
DELETIONS_PAGE = 100
DELETIONS_MAX = 1000


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime


@dataclass(frozen=True)
class SignedIn:
    user: User
    tokens: Tokens


class RefreshReused(Unauthenticated):
    reason = "REFRESH_TOKEN_REUSED"

    def __init__(self) -> None:
        super().__init__("refresh token already used; the session has been revoked")


class Accounts:
    def __init__(
        self,
        config: UsersConfig,
        db: Database,
        codec: TokenCodec,
        hasher: PasswordHasher,
        guard: LoginGuard,
        sessions: LocalSessionChecker,
        budgets: Budgets,
    ) -> None:
        self._config = config
        self._db = db
        self._codec = codec
        self._hasher = hasher
        self._guard = guard
        self._sessions = sessions
        self._budgets = budgets
        # Profiles read on every GetMe are remembered as briefly as session answers are
        # (SESSION_CHECK_TTL); this replica forgets one at once when it changes it.
        self._profiles: TtlMemo[User | None] = TtlMemo(config.runtime.session_check_ttl)

    async def register(self, email: str, password: str, name: str, address: str) -> SignedIn:
        email = normalize_email(email)
        check_password(password, email=email)
        name = clean_name(name, email=email)
        # Counted once the request is sound, before its hash: a taken email has cost one too.
        await self._budgets.register(address)
        hashed = await self._hasher.hash(password)
        now = datetime.now(UTC)
        async with self._db.transaction() as tx:
            repo = UserRepository(tx)
            if await repo.by_email(email) is not None:
                raise EmailTaken()
            user_id = str(uuid.uuid4())
            first = await repo.claim("first_user", user_id)
            roles = initial_roles(
                email,
                first_user=first,
                admin_email=self._config.admin_email,
                production=self._config.runtime.production,
            )
            user = User(user_id, email, name, hashed, roles, now, now, last_login=now)
            await repo.add(user)
            tokens = await self._open_session(tx, user, now, address)
        return SignedIn(user, tokens)

    async def login(self, email: str, password: str, address: str) -> SignedIn:
        # The form emails were stored in before they were normalized: the accounts migration
        # 0002 kept it where the new form was another account's or no address.
        kept = email.strip().lower()
        try:
            normalized: str | None = normalize_email(email)
        except InvalidArgument:
            normalized = None  # no address now: only an account kept in that form has it
        async with self._db.reading() as tx:
            repo = UserRepository(tx)
            user = await repo.by_email(kept) if kept and kept != normalized else None
            if user is None and normalized is not None:
                user = await repo.by_email(normalized)
        # Failures count against the account found, by its id: twins kept in two forms are two
        # accounts, and one's sign-in must not forgive failures at the other. An email no
        # account has is counted by itself.
        account = user.id if user is not None else (normalized or kept)
        # Refused before the password's check once successes have spent the budgets; the
        # guard's refusals are for failures.
        await self._budgets.check_login(user.id if user is not None else None, address)
        if not await self._guarded_check(
            account, address, password, user.password_hash if user else None
        ):
            raise InvalidCredentials()
        assert user is not None  # only an account's hash can match
        await self._budgets.logged_in(user.id, address)
        now = datetime.now(UTC)
        async with self._db.transaction() as tx:
            repo = UserRepository(tx)
            # Read again, locked: the account may have changed while the password was checked
            # (a quarter of a second). Its new password, roles or email stand: a login stamps
            # its time and nothing else, and a password changed meanwhile refuses the old one.
            fresh = await repo.get(user.id, lock=True)
            if fresh is None or fresh.password_hash != user.password_hash:
                raise InvalidCredentials()
            await repo.touch_login(user.id, now)
            user = replace(fresh, last_login=now)
            tokens = await self._open_session(tx, user, now, address)
        self._profiles.forget(user.id)
        return SignedIn(user, tokens)

    async def refresh(self, refresh_token: str) -> Tokens:
        try:
            claims = self._codec.read_refresh(refresh_token)
        except Unauthenticated as error:
            if error.reason != "TOKEN_EXPIRED":
                raise
            # A refresh token ends with its session at the latest, but whether that session
            # ended by itself or was revoked first (a logout) is its row's to say.
            lapsed = self._codec.read_refresh(refresh_token, lapsed=True)
            await self._budgets.refresh(lapsed.user_id)
            async with self._db.reading() as tx:
                ends = await SessionRepository(tx).ends_at(lapsed.session_id)
            raise (SessionRevoked() if ends is None else SessionExpired()) from None
        await self._budgets.refresh(claims.user_id)
        now = datetime.now(UTC)
        reused = False
        async with self._db.transaction() as tx:
            sessions = SessionRepository(tx)
            ends = await sessions.ends_at(claims.session_id)
            if ends is None:
                raise SessionRevoked()
            if ends <= now:
                raise SessionExpired()
            if not await sessions.spend_refresh(claims.token_id, claims.session_id, now):
                # A spent token came back: it was stolen or replayed. End the whole session.
                await sessions.revoke(claims.session_id, now, "refresh-reuse")
                reused = True
            else:
                user = await UserRepository(tx).get(claims.user_id)
                if user is None:
                    raise SessionRevoked("account no longer exists")
                tokens = await self._issue(tx, user, claims.session_id, now, ends)
        if reused:
            await self._sessions.revoked([claims.session_id])
            raise RefreshReused()
        return tokens

    async def logout(self, identity: Identity, *, all_sessions: bool) -> int:
        now = datetime.now(UTC)
        async with self._db.transaction() as tx:
            sessions = SessionRepository(tx)
            if all_sessions:
                revoked = await sessions.revoke_all(identity.user_id, now, "logout-all")
            else:
                revoked = (
                    [identity.session_id]
                    if await sessions.revoke(identity.session_id, now, "logout")
                    else []
                )
        await self._sessions.revoked(revoked)
        if all_sessions:
            await self._sessions.all_revoked(identity.user_id)
        return len(revoked)

    async def session_state(self, identity: Identity) -> SessionState:
        """What became of the session a token (expired or not) was issued for, within the
        account's budget of checks (SESSION_CHECKS_PER_USER).

        A token asks however long ago it expired, on a port that answers whoever reaches it,
        not only the facade with its limits: without a budget, a holder of tokens could ask
        without end. It is the account's, not the session's (logging in again would buy a fresh
        one) nor the calling address's (one service replica asks for all its users, each with
        that user's own token, so nothing tells it from any other caller)."""
        await self._budgets.check_session(identity.user_id)
        return await self._sessions.state(identity)

    async def get(self, actor: Identity, user_id: str) -> User:
        check_may_view(actor.user_id, actor.is_admin, user_id)
        return _existing(await self._profiles.get(user_id, lambda: self._load(user_id)), user_id)

    async def holder(self, identity: Identity) -> User:
        """The account a live session's token belongs to, as it is now: its email may have
        changed since the token was issued."""
        user = await self._profiles.get(identity.user_id, lambda: self._load(identity.user_id))
        if user is None:
            raise SessionRevoked("account no longer exists")
        return user

    async def _load(self, user_id: str) -> User | None:
        async with self._db.reading() as tx:
            return await UserRepository(tx).get(user_id)

    async def list(self, page: Page, q: str) -> tuple[list[User], int]:
        async with self._db.reading() as tx:
            return await UserRepository(tx).page(offset=page.offset, limit=page.limit, q=q.strip())

    async def update(
        self, actor: Identity, user_id: str, changes: ProfileChanges, address: str
    ) -> User:
        check_may_change(actor.user_id, actor.is_admin, user_id, changes)
        roles = check_roles(changes.roles) if changes.roles else None
        new_hash: bytes | None = None
        checked: bytes | None = None  # the hash the current password was checked against
        revoked: list[str] = []
        async with self._db.reading() as tx:
            current = _existing(await UserRepository(tx).get(user_id), user_id)
        new_email = requested_email(changes.email, current.email)
        if changes.new_password is not None:
            check_password(changes.new_password, email=current.email, field_name="newPassword")
        if (changes.new_password is not None or new_email is not None) and (
            must_give_current_password(actor.user_id, user_id)
        ):
            await self._check_current_password(
                current,
                changes.current_password,
                address,
                password_change=changes.new_password is not None,
                action="email change",
            )
            checked = current.password_hash
        if changes.new_password is not None:
            new_hash = await self._hasher.hash(changes.new_password)
        now = datetime.now(UTC)
        async with self._db.transaction() as tx:
            repo = UserRepository(tx)
            user = _existing(await repo.get(user_id, lock=True), user_id)
            if checked is not None and user.password_hash != checked:
                # Changed while the current password was checked: the one given is current no
                # more, as it is for a login (and as it would be for a request a moment later).
                raise InvalidCredentials()
            if changes.name is not None:
                user.name = clean_name(changes.name, email=user.email)
            # Only a new one: an email sent back unchanged must not undo one changed meanwhile
            # (by an admin), nor write one that no current password was asked for.
            if new_email is not None:
                user.email = new_email
            every_session = False
            if roles is not None and roles != user.roles:
                if user.is_admin and "admin" not in roles and await repo.count_admins() <= 1:
                    raise LastAdmin()
                user.roles = roles
                # Tokens carry roles: end the sessions so new roles take effect at once.
                revoked += await SessionRepository(tx).revoke_all(user.id, now, "roles-changed")
                every_session = True
            if new_hash is not None:
                user.password_hash = new_hash
                keep = actor.session_id if actor.user_id == user_id else None
                revoked += await SessionRepository(tx).revoke_all(
                    user.id, now, "password-changed", keep=keep
                )
            user.updated_at = now
            await repo.save(user)
        self._profiles.forget(user_id)
        await self._sessions.revoked(revoked)
        if every_session:
            await self._sessions.all_revoked(user_id)
        return user

    async def _check_current_password(
        self,
        user: User,
        password: str | None,
        address: str,
        *,
        password_change: bool,
        action: str,
    ) -> None:
        """The current password a change that could take `user`'s account from its owner must
        give (must_give_current_password), checked as a login's is.

        An access token is no password: whoever stole one must not get, here, the guesses the
        guard denies them at Login, so a wrong one is a failed login (from `address`, at this
        account) and a refused one checks nothing. A right one spends what a login does (a new
        email, a deletion: a check each), or for a password change, which also hashes the new
        one and ends the other sessions, the account's budget of those. `action` names the
        change (an email change, an account deletion) in a refusal of the login budget."""
        if not password:
            # Nothing was guessed: no check, and no failed login.
            raise InvalidArgument.field(
                "currentPassword",
                "is required to change your own password or email, or to delete your account",
            )
        if password_change:
            await self._budgets.check_password_change(user.id)
        else:
            await self._budgets.check_login(user.id, address, action=action)
        if not await self._guarded_check(user.id, address, password, user.password_hash):
            raise InvalidCredentials()
        if password_change:
            await self._budgets.current_password_matched(user.id)
        else:
            await self._budgets.logged_in(user.id, address)

    async def _guarded_check(
        self, account: str, address: str, password: str, hashed: bytes | None
    ) -> bool:
        """Whether `password` is the one `hashed` was made from, within the login guard: refused
        (TooManyAttempts, with nothing checked) while `address` must wait at `account`, its
        failure counted, its success forgiving this address's failures there."""
        await self._guard.begin(account, address)
        try:
            if not await self._hasher.verify(password, hashed):
                await self._guard.failed(account, address)
                return False
            await self._guard.succeeded(account, address)
            return True
        finally:
            await self._guard.end(account, address)

    async def delete(
        self, actor: Identity, user_id: str, current_password: str | None, address: str
    ) -> None:
        check_may_change(actor.user_id, actor.is_admin, user_id, ProfileChanges())
        checked: bytes | None = None  # the hash the current password was checked against
        if must_give_current_password(actor.user_id, user_id):
            async with self._db.reading() as tx:
                owner = _existing(await UserRepository(tx).get(user_id), user_id)
            await self._check_current_password(
                owner, current_password, address, password_change=False, action="account deletion"
            )
            checked = owner.password_hash
        now = datetime.now(UTC)
        async with self._db.transaction() as tx:
            repo = UserRepository(tx)
            user = _existing(await repo.get(user_id, lock=True), user_id)
            if checked is not None and user.password_hash != checked:
                raise InvalidCredentials()  # changed while it was checked, as in update
            if user.is_admin and await repo.count_admins() <= 1:
                raise LastAdmin()
            revoked = await SessionRepository(tx).revoke_all(user_id, now, "account-deleted")
            await repo.remove(user_id)
            # With the account, or not at all: what every other service erases its data by.
            await DeletionRepository(tx).record(user_id, now)
        self._profiles.forget(user_id)
        await self._sessions.revoked(revoked)
        await self._sessions.all_revoked(user_id)

    async def deletions(self, after: int, limit: int) -> tuple[Sequence[AccountDeletion], int]:
        """The accounts deleted after the sequence number `after`, oldest first (`limit` at
        most, 0: DELETIONS_PAGE), and the newest deletion's number."""
        if after < 0:
            raise InvalidArgument.field("afterSequence", "must be 0 or more")
        async with self._db.reading() as tx:
            repo = DeletionRepository(tx)
            found = await repo.after(after, min(limit, DELETIONS_MAX) or DELETIONS_PAGE)
            return found, await repo.last()

    async def _open_session(
        self, tx: AsyncSession, user: User, now: datetime, address: str
    ) -> Tokens:
        session_id = str(uuid.uuid4())
        expires = now + timedelta(seconds=self._config.refresh_token_ttl)
        await SessionRepository(tx).open(
            session_id=session_id, user_id=user.id, now=now, expires=expires, address=address
        )
        return await self._issue(tx, user, session_id, now, expires)

    async def _issue(
        self, tx: AsyncSession, user: User, session_id: str, now: datetime, session_ends: datetime
    ) -> Tokens:
        """A session's next pair of tokens. Both end with the session at the latest: a token
        that outlived it would be refused as revoked (rotated, a refresh token was stamped, and
        advertised, REFRESH_TOKEN_TTL from the refresh, past the session's fixed end)."""
        token_id = uuid.uuid4().hex
        remaining = int((session_ends - now).total_seconds())
        refresh, refresh_expires = self._codec.issue_refresh(
            user_id=user.id,
            session_id=session_id,
            token_id=token_id,
            ttl=max(0, min(self._config.refresh_token_ttl, remaining)),
        )
        # Whole seconds: a token capped by its session ends within a second before it. The
        # codec counts from its own, later, clock: never past the end all the same.
        refresh_expires = min(refresh_expires, session_ends)
        await SessionRepository(tx).issue_refresh(
            token_id=token_id, session_id=session_id, now=now, expires=refresh_expires
        )
        access, access_expires = self._codec.issue_access(
            user_id=user.id,
            session_id=session_id,
            email=user.email,
            roles=user.roles,
            session_ends=session_ends,
        )
        return Tokens(access, refresh, access_expires, refresh_expires)


def _existing(user: User | None, user_id: str) -> User:
    """The account found, or NotFound when there is none with `user_id`."""
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user
