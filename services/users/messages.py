"""Users' and tokens' wire messages, and the cache of profile messages GetMe answers with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from stockfolio.users.v1 import users_pb2

from services.runtime.auth import SessionState
from services.runtime.timestamps import optional_timestamp, timestamp
from services.users.accounts import Tokens
from services.users.domain import ADMIN, USER, AccountDeletion, User

# Messages kept at most; past it the cache starts again (profiles change rarely).
CACHED_MESSAGES = 10_000

_ROLE_TO_PROTO = {USER: users_pb2.ROLE_USER, ADMIN: users_pb2.ROLE_ADMIN}
_PROTO_TO_ROLE = {v: k for k, v in _ROLE_TO_PROTO.items()}
SESSION_STATES = {
    SessionState.LIVE: users_pb2.SESSION_STATE_LIVE,
    SessionState.REVOKED: users_pb2.SESSION_STATE_REVOKED,
    SessionState.EXPIRED: users_pb2.SESSION_STATE_EXPIRED,
}


def deletion_message(deletion: AccountDeletion) -> users_pb2.AccountDeletion:
    return users_pb2.AccountDeletion(
        user_id=deletion.user_id,
        sequence=deletion.sequence,
        deleted_at=timestamp(deletion.deleted_at),
    )


def user_message(user: User) -> users_pb2.User:
    return users_pb2.User(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=role_messages(user.roles),
        created_at=optional_timestamp(user.created_at),
        updated_at=optional_timestamp(user.updated_at),
        last_login=optional_timestamp(user.last_login),
    )


def tokens_message(tokens: Tokens) -> users_pb2.AuthTokens:
    return users_pb2.AuthTokens(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        access_token_expires_at=optional_timestamp(tokens.access_expires_at),
        refresh_token_expires_at=optional_timestamp(tokens.refresh_expires_at),
    )


def roles_of(values: list[users_pb2.Role.ValueType]) -> list[str]:
    # The protos' rules (checked before any handler) refuse unknown and unspecified roles.
    return [_PROTO_TO_ROLE[v] for v in values]


def role_messages(roles: Iterable[str]) -> list[users_pb2.Role.ValueType]:
    return [_ROLE_TO_PROTO[r] for r in roles if r in _ROLE_TO_PROTO]


class UserMessages:
    """GetMe answers the same profile over and over: its message is built once per version."""

    def __init__(self, limit: int = CACHED_MESSAGES) -> None:
        self._limit = limit
        self._messages: dict[tuple[str, datetime, datetime | None], users_pb2.User] = {}

    def of(self, user: User) -> users_pb2.User:
        version = (user.id, user.updated_at, user.last_login)
        message = self._messages.get(version)
        if message is None:
            if len(self._messages) >= self._limit:
                self._messages.clear()
            message = self._messages[version] = user_message(user)
        return message
