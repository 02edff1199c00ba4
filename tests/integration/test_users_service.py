"""The users service through its real gRPC server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer as authorization
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users
from tests.rpc_errors import expect_error, fields, reason

PASSWORD = "correct-horse-9"


@pytest.fixture
async def stub(users_service: RuntimeConfig) -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
    async with grpc.aio.insecure_channel(users_service.addresses["users"][0]) as channel:
        yield users_pb2_grpc.UsersServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (authorization(token),)


async def register(
    stub: users_pb2_grpc.UsersServiceStub, email: str, password: str = PASSWORD, name: str = ""
) -> users_pb2.RegisterResponse:
    reply: users_pb2.RegisterResponse = await stub.Register(
        users_pb2.RegisterRequest(email=email, password=password, name=name)
    )
    return reply


async def test_first_user_is_admin_and_later_users_are_not(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    first = await register(stub, "Ada@Example.com ", name="Ada")
    second = await register(stub, "bob@example.com")
    assert first.user.email == "ada@example.com"
    assert list(first.user.roles) == [users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN]
    assert list(second.user.roles) == [users_pb2.ROLE_USER]
    assert second.user.name == "bob"
    assert first.tokens.token_type == "Bearer"
    assert first.tokens.access_token and first.tokens.refresh_token


async def test_duplicate_email_after_normalization_is_a_conflict(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    await register(stub, "carol@example.com")
    error = await expect_error(
        register(stub, "  CAROL@example.COM"), grpc.StatusCode.ALREADY_EXISTS
    )
    assert reason(error) == "EMAIL_TAKEN"


async def test_concurrent_registrations_of_one_email_create_one_account(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    results = await asyncio.gather(
        *(register(stub, "race@example.com") for _ in range(8)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, users_pb2.RegisterResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert len(refused) == 7
    assert {e.code() for e in refused} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_weak_password_is_rejected_naming_the_field(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    # Length is the proto's rule (checked before the handler, VALIDATION_ERROR as for any
    # field); the policy beyond it is the service's own (WEAK_PASSWORD).
    error = await expect_error(
        register(stub, "dave@example.com", password="short"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert reason(error) == "VALIDATION_ERROR"
    assert set(fields(error)) == {"password"}
    assert "at least 8 characters" in (error.details() or "")
    error = await expect_error(
        register(stub, "dave@example.com", password="onlyletters"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason(error) == "WEAK_PASSWORD"
    assert set(fields(error)) == {"password"}
    assert "must contain a letter and a digit" in (error.details() or "")


async def test_invalid_email_is_rejected_naming_the_field(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    error = await expect_error(register(stub, "not-an-email"), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields(error) == ["email"]


async def test_wrong_email_and_wrong_password_get_the_same_answer(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    await register(stub, "erin@example.com")
    unknown = await expect_error(
        stub.Login(users_pb2.LoginRequest(email="nobody@example.com", password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    wrong = await expect_error(
        stub.Login(users_pb2.LoginRequest(email="erin@example.com", password="wrong-pass-1")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert unknown.details() == wrong.details() == "invalid email or password"
    assert reason(unknown) == reason(wrong) == "INVALID_CREDENTIALS"


async def test_login_records_last_login_and_opens_a_new_session(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    registered = await register(stub, "fay@example.com")
    login = await stub.Login(users_pb2.LoginRequest(email="FAY@example.com", password=PASSWORD))
    assert login.user.id == registered.user.id
    assert login.user.last_login.ToDatetime() >= registered.user.created_at.ToDatetime()
    a = await stub.ValidateToken(
        users_pb2.ValidateTokenRequest(), metadata=bearer(registered.tokens.access_token)
    )
    b = await stub.ValidateToken(
        users_pb2.ValidateTokenRequest(), metadata=bearer(login.tokens.access_token)
    )
    assert a.valid and b.valid
    assert a.user_id == b.user_id == registered.user.id
    assert a.session_id != b.session_id


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_session(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await register(stub, "hal@example.com")
    first = signed.tokens.refresh_token
    rotated = await stub.Refresh(users_pb2.RefreshRequest(refresh_token=first))
    assert rotated.tokens.refresh_token != first
    me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(rotated.tokens.access_token))
    assert me.user.email == "hal@example.com"

    reused = await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=first)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(reused) == "REFRESH_TOKEN_REUSED"
    # The whole family is gone: the rotated tokens stop working too.
    revoked = await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(rotated.tokens.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(revoked) == "SESSION_REVOKED"
    await expect_error(
        stub.Refresh(users_pb2.RefreshRequest(refresh_token=rotated.tokens.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await register(stub, "ivy@example.com")
    token = signed.tokens.refresh_token
    results = await asyncio.gather(
        *(stub.Refresh(users_pb2.RefreshRequest(refresh_token=token)) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, users_pb2.RefreshResponse) for r in results) <= 1
    assert sum(isinstance(r, grpc.aio.AioRpcError) for r in results) >= 4


async def test_logout_ends_the_session_at_once_on_this_service(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await register(stub, "jan@example.com")
    other = await stub.Login(users_pb2.LoginRequest(email="jan@example.com", password=PASSWORD))
    token = signed.tokens.access_token
    result = await stub.Logout(users_pb2.LogoutRequest(), metadata=bearer(token))
    assert result.revoked_sessions == 1
    error = await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(error) == "SESSION_REVOKED"
    # Only that session: the other login still works.
    me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(other.tokens.access_token))
    assert me.user.email == "jan@example.com"


async def test_logout_of_all_sessions_ends_every_session(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await register(stub, "kim@example.com")
    other = await stub.Login(users_pb2.LoginRequest(email="kim@example.com", password=PASSWORD))
    result = await stub.Logout(
        users_pb2.LogoutRequest(all_sessions=True), metadata=bearer(signed.tokens.access_token)
    )
    assert result.revoked_sessions == 2
    await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(other.tokens.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_users_see_only_themselves_and_admins_see_everyone(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    admin = await register(stub, "admin@example.com")
    user = await register(stub, "lee@example.com")
    denied = await expect_error(
        stub.GetUser(
            users_pb2.GetUserRequest(id=admin.user.id), metadata=bearer(user.tokens.access_token)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert reason(denied) == "FORBIDDEN"
    seen = await stub.GetUser(
        users_pb2.GetUserRequest(id=user.user.id), metadata=bearer(admin.tokens.access_token)
    )
    assert seen.user.email == "lee@example.com"
    await expect_error(
        stub.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(user.tokens.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        stub.GetUser(
            users_pb2.GetUserRequest(id="no-such-id"), metadata=bearer(admin.tokens.access_token)
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_admin_lists_users_page_by_page_and_searches(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    admin = await register(stub, "root@example.com")
    for i in range(4):
        await register(stub, f"member{i}@example.com", name=f"Member {i}")
    token = bearer(admin.tokens.access_token)
    page = await stub.ListUsers(users_pb2.ListUsersRequest(page=2, limit=2), metadata=token)
    assert [u.email for u in page.users] == ["member1@example.com", "member2@example.com"]
    assert (page.pagination.page, page.pagination.limit) == (2, 2)
    assert (page.pagination.total, page.pagination.total_pages) == (5, 3)
    found = await stub.ListUsers(users_pb2.ListUsersRequest(q="MEMBER 3"), metadata=token)
    assert [u.email for u in found.users] == ["member3@example.com"]
    bad = await expect_error(
        stub.ListUsers(users_pb2.ListUsersRequest(limit=500), metadata=token),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields(bad) == ["limit"]


async def test_only_admins_change_roles_and_a_role_change_ends_the_sessions(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    admin = await register(stub, "boss@example.com")
    user = await register(stub, "max@example.com")
    await expect_error(
        stub.UpdateUser(
            users_pb2.UpdateUserRequest(id=user.user.id, roles=[users_pb2.ROLE_ADMIN]),
            metadata=bearer(user.tokens.access_token),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    promoted = await stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=user.user.id, roles=[users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN]
        ),
        metadata=bearer(admin.tokens.access_token),
    )
    assert list(promoted.user.roles) == [users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN]
    await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(user.tokens.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    again = await stub.Login(users_pb2.LoginRequest(email="max@example.com", password=PASSWORD))
    listed = await stub.ListUsers(
        users_pb2.ListUsersRequest(), metadata=bearer(again.tokens.access_token)
    )
    assert listed.pagination.total == 2


async def test_the_last_admin_cannot_step_down(stub: users_pb2_grpc.UsersServiceStub) -> None:
    admin = await register(stub, "solo@example.com")
    error = await expect_error(
        stub.UpdateUser(
            users_pb2.UpdateUserRequest(id=admin.user.id, roles=[users_pb2.ROLE_USER]),
            metadata=bearer(admin.tokens.access_token),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "LAST_ADMIN"


async def test_changing_password_needs_the_current_one_and_ends_other_sessions(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    signed = await register(stub, "ned@example.com")
    other = await stub.Login(users_pb2.LoginRequest(email="ned@example.com", password=PASSWORD))
    token = bearer(signed.tokens.access_token)
    await expect_error(
        stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                id=signed.user.id, new_password="new-secret-22", current_password="nope-nope-1"
            ),
            metadata=token,
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=signed.user.id, new_password="new-secret-22", current_password=PASSWORD
        ),
        metadata=token,
    )
    await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(other.tokens.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=token)
    assert me.user.email == "ned@example.com"
    login = await stub.Login(
        users_pb2.LoginRequest(email="ned@example.com", password="new-secret-22")
    )
    assert login.user.id == signed.user.id


async def test_updating_name_and_email_keeps_emails_unique(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    await register(stub, "olga@example.com")
    pat = await register(stub, "pat@example.com")
    token = bearer(pat.tokens.access_token)
    updated = await stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=pat.user.id,
            name="  Pat   Smith ",
            email="PAT2@example.com",
            current_password=PASSWORD,
        ),
        metadata=token,
    )
    assert (updated.user.name, updated.user.email) == ("Pat Smith", "pat2@example.com")
    error = await expect_error(
        stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                id=pat.user.id, email="olga@example.com", current_password=PASSWORD
            ),
            metadata=token,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert reason(error) == "EMAIL_TAKEN"


async def test_deleting_an_account_ends_its_sessions(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    await register(stub, "queen@example.com")
    user = await register(stub, "rob@example.com")
    token = bearer(user.tokens.access_token)
    await stub.DeleteUser(
        users_pb2.DeleteUserRequest(id=user.user.id, current_password=PASSWORD), metadata=token
    )
    await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=token), grpc.StatusCode.UNAUTHENTICATED
    )
    await expect_error(
        stub.Login(users_pb2.LoginRequest(email="rob@example.com", password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_protected_rpcs_need_a_token_over_grpc(
    stub: users_pb2_grpc.UsersServiceStub,
) -> None:
    error = await expect_error(
        stub.GetMe(users_pb2.GetMeRequest()), grpc.StatusCode.UNAUTHENTICATED
    )
    assert reason(error) == "TOKEN_MISSING"
    forged = await expect_error(
        stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer("a.b.c")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(forged) == "TOKEN_INVALID"


async def test_failed_logins_from_one_address_across_accounts_lock_that_address(
    users_service: RuntimeConfig,
) -> None:
    address = users_service.addresses["users"][0]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = users_pb2_grpc.UsersServiceStub(channel)
        await register(stub, "victim@example.com")
        attacker = (("x-forwarded-for", "203.0.113.9"),)
        for i in range(20):
            await expect_error(
                stub.Login(
                    users_pb2.LoginRequest(email=f"guess{i}@example.com", password="bad-guess-1"),
                    metadata=attacker,
                ),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        locked = await expect_error(
            stub.Login(
                users_pb2.LoginRequest(email="victim@example.com", password=PASSWORD),
                metadata=attacker,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert "this address" in (locked.details() or "")
        # Another address is unaffected.
        fine = await stub.Login(
            users_pb2.LoginRequest(email="victim@example.com", password=PASSWORD),
            metadata=(("x-forwarded-for", "198.51.100.7"),),
        )
        assert fine.user.email == "victim@example.com"


def test_no_user_message_can_carry_a_password_hash() -> None:
    for message in (users_pb2.User, users_pb2.RegisterResponse, users_pb2.LoginResponse):
        names = {f.name for f in message.DESCRIPTOR.fields}
        assert not any("hash" in n or "password" in n for n in names), names


async def test_an_untrusted_caller_cannot_dodge_the_address_guard_by_forging_its_address(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    # Only the listed proxies may name the client's address; loopback callers here are not one.
    config = make_config(
        "users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", TRUSTED_PROXIES="10.0.0.0/8"
    )
    async with (
        running(config, build_users, port=0, grace=0) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = users_pb2_grpc.UsersServiceStub(channel)
        await register(stub, "target@example.com")
        for i in range(20):
            await expect_error(
                stub.Login(
                    users_pb2.LoginRequest(email=f"probe{i}@example.com", password="bad-guess-1"),
                    metadata=(("x-forwarded-for", f"192.0.2.{i}"),),
                ),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        locked = await expect_error(
            stub.Login(
                users_pb2.LoginRequest(email="target@example.com", password=PASSWORD),
                metadata=(("x-forwarded-for", "192.0.2.250"),),
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert "this address" in (locked.details() or "")
