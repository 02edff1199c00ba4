"""Account edges of the users service, through the real server on SQLite and PostgreSQL.

A login password longer than any the service sets is refused rather than cut to its first
72 bytes (bcrypt reads no further, so any password beginning with the real one opened the
account). Password changes sent together, each giving the same current password, let one
through: the rest name a password that stopped being current while it was checked, and are
refused as a login would be (each used to be told its password was set). An account without
a name is named after its email's part before the @, cut to the 100 characters a name may have
(PostgreSQL refused a longer one: a 500 for a valid registration, profile update or `admin
create`). A refresh token ends with its session at the latest (a rotated one was stamped, and
advertised, a full REFRESH_TOKEN_TTL from the refresh, past the session's fixed end), and a
session past its end is refused as expired (SESSION_EXPIRED), not as revoked; one a logout
ended stays revoked (SESSION_REVOKED) when its refresh token has lapsed too. An access token
ends with its session at the latest too, and one used past its session's end (on users, on
another service, which asks users, or on a users replica reading another's answer from Redis)
is refused as expired, not as revoked. ValidateToken
(GET /auth/validate) answers the account's email, not the token's, once it changed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.portfolio.server import build as build_portfolio
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.server import running
from services.users.admins import create_admin
from services.users.domain import MAX_NAME
from services.users.orm import refresh_tokens, sessions
from services.users.passwords import PasswordHasher
from services.users.server import build as build_users
from tests.conftest import users_codec
from tests.rpc_errors import expect_error, reason

PASSWORD = "correct-horse-9"
Stub = users_pb2_grpc.UsersServiceStub


@pytest.fixture
async def stub(users_service: RuntimeConfig) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(users_service.addresses["users"][0]) as channel:
        yield users_pb2_grpc.UsersServiceStub(channel)


async def test_a_login_password_that_only_begins_with_the_real_one_is_refused(
    stub: Stub,
) -> None:
    longest = "a1" * 36  # 72 bytes: the longest password the service sets
    registered = await stub.Register(
        users_pb2.RegisterRequest(email="long@example.com", password=longest)
    )
    for longer in (longest + "-not-mine", longest + "x", longest + "é"):
        error = await expect_error(
            stub.Login(users_pb2.LoginRequest(email="long@example.com", password=longer)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert (reason(error), error.details()) == (
            "INVALID_CREDENTIALS",
            "invalid email or password",
        )
    # The password itself still opens the account.
    signed = await stub.Login(users_pb2.LoginRequest(email="long@example.com", password=longest))
    assert signed.user.id == registered.user.id


async def login_refused(stub: Stub, email: str, password: str) -> str:
    """The reason a login with `password` is refused."""
    error = await expect_error(
        stub.Login(users_pb2.LoginRequest(email=email, password=password)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    return reason(error)


async def test_password_changes_sent_together_from_one_current_password_let_one_through(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    # Cost 8: each change's check of the current password takes long enough to overlap.
    config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="8")
    async with (
        running(config, build_users, port=0, grace=0) as users,
        grpc.aio.insecure_channel(f"127.0.0.1:{users.port}") as channel,
    ):
        stub = users_pb2_grpc.UsersServiceStub(channel)
        email = "race@example.com"
        signed = await stub.Register(users_pb2.RegisterRequest(email=email, password=PASSWORD))
        sessions = [signed.tokens]
        for _ in range(3):
            login = await stub.Login(users_pb2.LoginRequest(email=email, password=PASSWORD))
            sessions.append(login.tokens)
        results = await asyncio.gather(
            *(
                stub.UpdateUser(
                    users_pb2.UpdateUserRequest(
                        id=signed.user.id, current_password=PASSWORD, new_password=f"new-pass-{n}"
                    ),
                    metadata=(bearer(tokens.access_token),),
                )
                for n, tokens in enumerate(sessions)
            ),
            return_exceptions=True,
        )
        (winner,) = [
            n for n, r in enumerate(results) if isinstance(r, users_pb2.UpdateUserResponse)
        ]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert [(r.code(), reason(r)) for r in refused] == [
            (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
        ] * 3
        # The account has the winner's password, and the winner's session alone lives on.
        after = await stub.Login(users_pb2.LoginRequest(email=email, password=f"new-pass-{winner}"))
        assert after.user.id == signed.user.id
        assert await login_refused(stub, email, PASSWORD) == "INVALID_CREDENTIALS"
        loser = (winner + 1) % len(sessions)
        assert await login_refused(stub, email, f"new-pass-{loser}") == "INVALID_CREDENTIALS"
        for n, tokens in enumerate(sessions):
            me = stub.GetMe(users_pb2.GetMeRequest(), metadata=(bearer(tokens.access_token),))
            if n == winner:
                assert (await me).user.email == email
            else:
                error = await expect_error(me, grpc.StatusCode.UNAUTHENTICATED)
                assert reason(error) == "SESSION_REVOKED"


async def test_an_account_without_a_name_takes_its_emails_local_part_cut_to_a_names_length(
    stub: Stub, users_database: str
) -> None:
    local = "a" * 150  # an email may have 254 characters, a name 100
    email = f"{local}@example.com"
    signed = await stub.Register(users_pb2.RegisterRequest(email=email, password=PASSWORD))
    assert (signed.user.email, signed.user.name) == (email, local[:MAX_NAME])

    auth = (bearer(signed.tokens.access_token),)
    named = await stub.UpdateUser(
        users_pb2.UpdateUserRequest(id=signed.user.id, name="Ada"), metadata=auth
    )
    assert named.user.name == "Ada"
    unnamed = await stub.UpdateUser(
        users_pb2.UpdateUserRequest(id=signed.user.id, name=""), metadata=auth
    )
    assert unnamed.user.name == local[:MAX_NAME]
    me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=auth)
    assert me.user.name == local[:MAX_NAME]

    # The operator's `admin create` names a new admin the same way.
    db, hasher = Database(users_database), PasswordHasher(4)
    try:
        admin = await create_admin(db, hasher, f"{'b' * 120}@example.com", PASSWORD)
    finally:
        hasher.close()
        await db.close()
    assert admin.name == "b" * MAX_NAME
    listed = await stub.ListUsers(users_pb2.ListUsersRequest(q="bbb"), metadata=auth)
    assert [(u.id, u.name) for u in listed.users] == [(admin.id, "b" * MAX_NAME)]


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def stored(url: str, query: Any) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(query)).all())
    finally:
        await engine.dispose()


async def test_a_refresh_token_never_outlives_its_session(stub: Stub, users_database: str) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="rot@example.com", password=PASSWORD)
    )
    await asyncio.sleep(1.2)  # a full REFRESH_TOKEN_TTL from now ends after the session
    rotated = await stub.Refresh(
        users_pb2.RefreshRequest(refresh_token=signed.tokens.refresh_token)
    )
    ((ends,),) = await stored(users_database, select(sessions.c.expires_at))
    ends = utc(ends)
    assert ends > datetime.now(UTC) + timedelta(days=6)  # REFRESH_TOKEN_TTL: 7 days
    # The first token ends with the session; the rotated one too, to the (whole) second.
    advertised = [
        tokens.refresh_token_expires_at.ToDatetime(tzinfo=UTC)
        for tokens in (signed.tokens, rotated.tokens)
    ]
    assert advertised[0] == ends
    assert ends - timedelta(seconds=1) < advertised[1] <= ends
    for tokens in (signed.tokens, rotated.tokens):
        claims = jwt.decode(tokens.refresh_token, options={"verify_signature": False})
        assert ends.timestamp() - 2 < claims["exp"] <= ends.timestamp()
    query = select(refresh_tokens.c.expires_at).order_by(refresh_tokens.c.issued_at)
    assert [utc(r.expires_at) for r in await stored(users_database, query)] == advertised


async def test_a_session_past_its_end_is_refused_as_expired_not_as_revoked(
    stub: Stub, users_database: str
) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="end@example.com", password=PASSWORD)
    )
    engine = create_async_engine(users_database)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()
    ended = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=signed.tokens.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert (reason(ended), ended.details()) == ("SESSION_EXPIRED", "session expired; log in again")

    # A refresh token past its own end (it ends with its session) is told the same.
    claims = jwt.decode(signed.tokens.refresh_token, options={"verify_signature": False})
    lapsed, _ = users_codec().issue_refresh(
        user_id=claims["sub"], session_id=claims["sid"], token_id=claims["jti"], ttl=-1
    )
    expired = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=lapsed)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert (reason(expired), expired.details()) == (
        "SESSION_EXPIRED",
        "session expired; log in again",
    )

    # A session ended by a logout is still revoked, not expired.
    other = await stub.Login(users_pb2.LoginRequest(email="end@example.com", password=PASSWORD))
    await stub.Logout(users_pb2.LogoutRequest(), metadata=(bearer(other.tokens.access_token),))
    revoked = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=other.tokens.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert (reason(revoked), revoked.details()) == (
        "SESSION_REVOKED",
        "session has ended; log in again",
    )


async def test_a_logged_out_session_is_revoked_not_expired_once_its_refresh_token_lapsed(
    stub: Stub,
) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="out@example.com", password=PASSWORD)
    )
    await stub.Logout(users_pb2.LogoutRequest(), metadata=(bearer(signed.tokens.access_token),))
    claims = jwt.decode(signed.tokens.refresh_token, options={"verify_signature": False})
    lapsed, _ = users_codec().issue_refresh(
        user_id=claims["sub"], session_id=claims["sid"], token_id=claims["jti"], ttl=-1
    )
    revoked = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=lapsed)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert (reason(revoked), revoked.details()) == (
        "SESSION_REVOKED",
        "session has ended; log in again",
    )
    # Its session is read only from a token whose signature holds: a forged one is invalid.
    forged = jwt.encode(
        {**claims, "exp": 1},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": jwt.get_unverified_header(lapsed)["kid"]},
    )
    invalid = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=forged)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(invalid) == "TOKEN_INVALID"


async def end_sessions(url: str, at: datetime) -> None:
    """Moves the end of every stored session to `at`."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(update(sessions).values(expires_at=at))
    finally:
        await engine.dispose()


async def test_an_access_token_ends_with_its_session(stub: Stub, users_database: str) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="short@example.com", password=PASSWORD)
    )
    ends = datetime.now(UTC) + timedelta(seconds=2)  # sooner than ACCESS_TOKEN_TTL
    await end_sessions(users_database, ends)
    rotated = await stub.Refresh(
        users_pb2.RefreshRequest(refresh_token=signed.tokens.refresh_token)
    )
    advertised = rotated.tokens.access_token_expires_at.ToDatetime(tzinfo=UTC)
    claims = jwt.decode(rotated.tokens.access_token, options={"verify_signature": False})
    assert ends - timedelta(seconds=1) < advertised <= ends
    assert ends.timestamp() - 2 < claims["exp"] <= ends.timestamp()
    auth = (bearer(rotated.tokens.access_token),)
    me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=auth)
    assert me.user.email == "short@example.com"

    await asyncio.sleep((ends - datetime.now(UTC)).total_seconds() + 0.1)
    # Past the end its token has lapsed (the client refreshes), and the refresh says why.
    lapsed = await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=auth), grpc.StatusCode.UNAUTHENTICATED
    )
    assert (reason(lapsed), lapsed.details()) == ("TOKEN_EXPIRED", "access token expired")
    ended = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=rotated.tokens.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert (reason(ended), ended.details()) == ("SESSION_EXPIRED", "session expired; log in again")


async def test_an_access_token_used_past_its_sessions_end_is_refused_as_expired_not_as_revoked(
    make_config: Callable[..., RuntimeConfig],
    users_service: RuntimeConfig,
    users_database: str,
    portfolio_database_url: str,
    stub: Stub,
) -> None:
    """Every service checks the session (portfolio asks users); past its end, an access token
    issued before that end was known to be near is told the session expired, as a refresh is."""
    users_address = users_service.addresses["users"][0]
    portfolio_config = make_config(
        "portfolio", USERS_ADDRS=users_address, PORTFOLIO_DATABASE_URL=portfolio_database_url
    )
    ended = await stub.Register(
        users_pb2.RegisterRequest(email="late@example.com", password=PASSWORD)
    )
    await end_sessions(users_database, datetime.now(UTC) - timedelta(seconds=1))
    logged_out = await stub.Login(
        users_pb2.LoginRequest(email="late@example.com", password=PASSWORD)
    )
    await stub.Logout(users_pb2.LogoutRequest(), metadata=(bearer(logged_out.tokens.access_token),))
    async with (
        running(portfolio_config, build_portfolio, port=0, grace=0) as portfolio,
        grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as channel,
    ):
        portfolios = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        calls: tuple[Callable[[tuple[tuple[str, str], ...]], Any], ...] = (
            lambda auth: stub.GetMe(users_pb2.GetMeRequest(), metadata=auth),
            lambda auth: portfolios.ListPortfolios(
                portfolio_pb2.ListPortfoliosRequest(), metadata=auth
            ),
        )
        # Twice each: the answer is remembered (SESSION_CHECK_TTL) as what it was.
        for _ in range(2):
            for call in calls:
                expired = await expect_error(
                    call((bearer(ended.tokens.access_token),)), grpc.StatusCode.UNAUTHENTICATED
                )
                assert (reason(expired), expired.details()) == (
                    "SESSION_EXPIRED",
                    "session expired; log in again",
                )
                # A session a logout ended is revoked still.
                revoked = await expect_error(
                    call((bearer(logged_out.tokens.access_token),)),
                    grpc.StatusCode.UNAUTHENTICATED,
                )
                assert (reason(revoked), revoked.details()) == (
                    "SESSION_REVOKED",
                    "session has ended; log in again",
                )


async def test_a_replica_reads_a_sessions_end_from_the_shared_cache_as_expired(
    make_config: Callable[..., RuntimeConfig], users_database: str, redis_url: str
) -> None:
    """The answer one users replica shares on Redis tells the others it expired, not that it
    was revoked."""
    config = make_config(
        "users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", REDIS_URL=redis_url
    )
    async with contextlib.AsyncExitStack() as stack:
        replicas = []
        for _ in range(2):
            replica = await stack.enter_async_context(running(config, build_users, port=0, grace=0))
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}")
            stack.push_async_callback(channel.close)
            replicas.append(users_pb2_grpc.UsersServiceStub(channel))
        first, second = replicas
        signed = await first.Register(
            users_pb2.RegisterRequest(email="shared@example.com", password=PASSWORD)
        )
        await end_sessions(users_database, datetime.now(UTC) - timedelta(seconds=1))
        auth = (bearer(signed.tokens.access_token),)
        expired = await expect_error(
            first.GetMe(users_pb2.GetMeRequest(), metadata=auth), grpc.StatusCode.UNAUTHENTICATED
        )
        assert reason(expired) == "SESSION_EXPIRED"
        # The second does not read the database (it would find the session live again now):
        # it reads the first one's answer.
        await end_sessions(users_database, datetime.now(UTC) + timedelta(days=1))
        shared = await expect_error(
            second.GetMe(users_pb2.GetMeRequest(), metadata=auth), grpc.StatusCode.UNAUTHENTICATED
        )
        assert (reason(shared), shared.details()) == (
            "SESSION_EXPIRED",
            "session expired; log in again",
        )


async def test_validate_answers_the_accounts_email_after_it_changed(stub: Stub) -> None:
    signed = await stub.Register(
        users_pb2.RegisterRequest(email="old@example.com", password=PASSWORD)
    )
    auth = (bearer(signed.tokens.access_token),)
    before = await stub.ValidateToken(users_pb2.ValidateTokenRequest(), metadata=auth)
    assert (before.user_id, before.email) == (signed.user.id, "old@example.com")
    await stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=signed.user.id, email="New@Example.com", current_password=PASSWORD
        ),
        metadata=auth,
    )
    after = await stub.ValidateToken(users_pb2.ValidateTokenRequest(), metadata=auth)
    me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=auth)
    assert (after.valid, after.user_id, after.email) == (True, signed.user.id, "new@example.com")
    assert me.user.email == after.email
    # The rest is the token's still: its session, its expiry, the roles it was issued with.
    assert (after.session_id, after.expires_at, list(after.roles)) == (
        before.session_id,
        before.expires_at,
        list(before.roles),
    )
