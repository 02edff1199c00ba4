"""What the login guard covers, tried as an attacker on the users service's own gRPC port: the
current password a change of one's own password or email, or a deletion of one's own account,
must give (a stolen access token is no password: it must not take the account, nor buy more
guesses than Login gives), and addresses by their block (an IPv6 /64 rotated through buys no
fresh failures). Through the real users server, on SQLite and PostgreSQL; bcrypt's own calls
counted (a refused attempt makes none); through the real facade, 422, 401 and 429 with
Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users
from tests.bcrypt_calls import BcryptCalls
from tests.conftest import users_server
from tests.integration.conftest import FacadeInFront
from tests.rpc_errors import expect_error, fields, reason, retry_after
from tests.waiting import until_async

PASSWORD = "correct-horse-9"
WRONG = "wrong-horse-9"
NEW = "battery-staple-7"
OWNER = "198.51.100.1"
THIEF = "203.0.113.66"
# LOGIN_FREE_FAILURES's default.
FREE_FAILURES = 5

Stub = users_pb2_grpc.UsersServiceStub


def calling(address: str, token: str | None = None) -> tuple[tuple[str, str], ...]:
    """A call as the facade makes it for a client at `address` (loopback is a trusted proxy),
    with `token` as its bearer."""
    bearer = (("authorization", f"Bearer {token}"),) if token else ()
    return (("x-forwarded-for", address), *bearer)


async def register(stub: Stub, email: str) -> users_pb2.RegisterResponse:
    request = users_pb2.RegisterRequest(email=email, password=PASSWORD)
    reply: users_pb2.RegisterResponse = await stub.Register(request, metadata=calling(OWNER))
    return reply


async def login(stub: Stub, email: str, address: str, password: str) -> users_pb2.LoginResponse:
    request = users_pb2.LoginRequest(email=email, password=password)
    reply: users_pb2.LoginResponse = await stub.Login(request, metadata=calling(address))
    return reply


async def change_password(
    stub: Stub, signed: users_pb2.RegisterResponse, address: str, current: str, new: str = NEW
) -> users_pb2.UpdateUserResponse:
    """UpdateUser with a new password, by whoever holds `signed`'s access token, from `address`."""
    request = users_pb2.UpdateUserRequest(
        id=signed.user.id, current_password=current, new_password=new
    )
    reply: users_pb2.UpdateUserResponse = await stub.UpdateUser(
        request, metadata=calling(address, signed.tokens.access_token)
    )
    return reply


async def change_email(
    stub: Stub,
    signed: users_pb2.RegisterResponse,
    address: str,
    email: str,
    current: str | None = None,
) -> users_pb2.UpdateUserResponse:
    """UpdateUser with a new email, by whoever holds `signed`'s access token, from `address`,
    giving `current` as the current password (None: none)."""
    request = users_pb2.UpdateUserRequest(id=signed.user.id, email=email)
    if current is not None:
        request.current_password = current
    reply: users_pb2.UpdateUserResponse = await stub.UpdateUser(
        request, metadata=calling(address, signed.tokens.access_token)
    )
    return reply


async def delete_account(
    stub: Stub, signed: users_pb2.RegisterResponse, address: str, current: str | None = None
) -> None:
    """DeleteUser of `signed`'s account, by whoever holds its access token, from `address`,
    giving `current` as the current password (None: none)."""
    request = users_pb2.DeleteUserRequest(id=signed.user.id)
    if current is not None:
        request.current_password = current
    await stub.DeleteUser(request, metadata=calling(address, signed.tokens.access_token))


async def password_missing(call: Any) -> None:
    """A change refused for want of the current password: nothing to check, no failed login."""
    error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
    assert (reason(error), fields(error)) == ("VALIDATION_ERROR", ["currentPassword"])


async def wrong(call: Any) -> None:
    """A password that did not match: a plain INVALID_CREDENTIALS."""
    error = await expect_error(call, grpc.StatusCode.UNAUTHENTICATED)
    assert reason(error) == "INVALID_CREDENTIALS"


async def too_many_attempts(call: Any, what: str) -> float:
    """A call the guard refused, its message naming `what`; the seconds it asks to wait."""
    error = await expect_error(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert reason(error) == "TOO_MANY_ATTEMPTS"
    assert what in (error.details() or ""), error.details()
    return retry_after(error)


async def test_a_stolen_token_guessing_the_current_password_is_slowed_as_a_login_guesser_is(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "vic@example.com")
        # The free failures, then the one that starts a 1 s wait: each a plain 401.
        for _ in range(FREE_FAILURES + 1):
            await wrong(change_password(stub, victim, THIEF, WRONG))
        before = bcrypt_calls.count
        # Even the right current password waits, unchecked; so do this address's logins there.
        wait = await too_many_attempts(
            change_password(stub, victim, THIEF, PASSWORD), "for this account from this address"
        )
        assert 0 < wait <= 1.0
        await too_many_attempts(login(stub, "vic@example.com", THIEF, PASSWORD), "this address")
        assert bcrypt_calls.count == before, "a refused attempt runs no bcrypt"

        # The wait over, one more guess is checked and doubles it; the refusals polled for meanwhile
        # checked nothing.
        checked: list[grpc.StatusCode] = []

        async def guessed() -> bool:
            try:
                await change_password(stub, victim, THIEF, WRONG)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    checked.append(error.code())
            return bool(checked)

        await until_async(guessed, "the thief's wait to end")
        assert checked == [grpc.StatusCode.UNAUTHENTICATED]
        assert bcrypt_calls.count == before + 1
        wait = await too_many_attempts(
            change_password(stub, victim, THIEF, WRONG), "for this account from this address"
        )
        assert 1.0 < wait <= 2.0

        # The owner, from their own address, is slowed by none of it.
        owner = await login(stub, "vic@example.com", OWNER, PASSWORD)
        assert owner.user.id == victim.user.id
        changed = await change_password(stub, victim, OWNER, PASSWORD)
        assert changed.user.id == victim.user.id
        assert (await login(stub, "vic@example.com", OWNER, NEW)).user.id == victim.user.id


async def test_wrong_current_passwords_and_failed_logins_are_one_count(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Guessing at Login and through a password change in turn gets the free failures once."""
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "una@example.com")
        for n in range(FREE_FAILURES + 1):
            if n % 2:
                await wrong(login(stub, "una@example.com", THIEF, WRONG))
            else:
                await wrong(change_password(stub, victim, THIEF, WRONG))
        await too_many_attempts(login(stub, "una@example.com", THIEF, PASSWORD), "this address")
        await too_many_attempts(change_password(stub, victim, THIEF, PASSWORD), "this address")


async def test_a_new_email_buys_a_thief_no_fresh_failures(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """The owner changes the account's email meanwhile, from home; failures follow the
    account, not its email."""
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "wes@example.com")
        for _ in range(FREE_FAILURES + 1):
            await wrong(change_password(stub, victim, THIEF, WRONG))
        await change_email(stub, victim, OWNER, "wes.new@example.com", PASSWORD)
        await too_many_attempts(change_password(stub, victim, THIEF, WRONG), "this address")
        await too_many_attempts(login(stub, "wes.new@example.com", THIEF, PASSWORD), "this address")


async def test_a_stolen_token_cannot_change_the_email_or_delete_the_account_without_the_password(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """A new email would lock the owner out for good (they do not know it, and there is no
    reset by email), and so would a deletion: each needs the password, which a token is not."""
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "ida@example.com")
        before = bcrypt_calls.count
        for current in (None, ""):
            await password_missing(change_email(stub, victim, THIEF, "thief@example.com", current))
            await password_missing(delete_account(stub, victim, THIEF, current))
        assert bcrypt_calls.count == before, "nothing was given, nothing checked"
        await wrong(change_email(stub, victim, THIEF, "thief@example.com", WRONG))
        await wrong(delete_account(stub, victim, THIEF, WRONG))

        # The account is the owner's still: its email, its password, the token's session.
        me = await stub.GetMe(
            users_pb2.GetMeRequest(), metadata=calling(THIEF, victim.tokens.access_token)
        )
        assert (me.user.id, me.user.email) == (victim.user.id, "ida@example.com")
        assert (await login(stub, "ida@example.com", OWNER, PASSWORD)).user.id == victim.user.id
        # A name, with the email sent back as it was (a profile form's save), takes no password.
        renamed = await stub.UpdateUser(
            users_pb2.UpdateUserRequest(id=victim.user.id, name="Ida", email=" IDA@example.com"),
            metadata=calling(THIEF, victim.tokens.access_token),
        )
        assert (renamed.user.name, renamed.user.email) == ("Ida", "ida@example.com")


async def test_guesses_through_email_changes_and_deletions_are_slowed_as_login_guesses(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """Wrong current passwords there are failed logins, counted with Login's and a password
    change's: past the free failures, even the right one waits, unchecked, wherever it is
    given; the owner, from home, is slowed by none of it."""
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "jon@example.com")
        for n in range(FREE_FAILURES + 1):
            guess = (
                delete_account(stub, victim, THIEF, WRONG)
                if n % 2
                else change_email(stub, victim, THIEF, "thief@example.com", WRONG)
            )
            await wrong(guess)
        before = bcrypt_calls.count
        wait = await too_many_attempts(
            change_email(stub, victim, THIEF, "thief@example.com", PASSWORD),
            "for this account from this address",
        )
        assert 0 < wait <= 1.0
        await too_many_attempts(delete_account(stub, victim, THIEF, PASSWORD), "this address")
        await too_many_attempts(change_password(stub, victim, THIEF, PASSWORD), "this address")
        await too_many_attempts(login(stub, "jon@example.com", THIEF, PASSWORD), "this address")
        assert bcrypt_calls.count == before, "a refused attempt runs no bcrypt"

        moved = await change_email(stub, victim, OWNER, "jon.new@example.com", PASSWORD)
        assert moved.user.email == "jon.new@example.com"
        assert (await login(stub, "jon.new@example.com", OWNER, PASSWORD)).user.id == (
            victim.user.id
        )


async def test_the_owner_giving_the_password_changes_the_email_and_deletes_the_account(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    async with users_server(make_config, users_database) as stub:
        await register(stub, "root@example.com")  # the first account: the admin, kept
        kim = await register(stub, "kim@example.com")
        elsewhere = await login(stub, "kim@example.com", OWNER, PASSWORD)
        moved = await change_email(stub, kim, OWNER, "Kim.New@example.com", PASSWORD)
        assert (moved.user.id, moved.user.email) == (kim.user.id, "kim.new@example.com")
        await wrong(login(stub, "kim@example.com", OWNER, PASSWORD))
        assert (await login(stub, "kim.new@example.com", OWNER, PASSWORD)).user.id == kim.user.id

        await delete_account(stub, kim, OWNER, PASSWORD)
        await wrong(login(stub, "kim.new@example.com", OWNER, PASSWORD))
        await expect_error(
            stub.GetMe(
                users_pb2.GetMeRequest(), metadata=calling(OWNER, elsewhere.tokens.access_token)
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )


async def test_an_admin_changes_and_deletes_another_account_without_a_password_not_their_own(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    """Taking an account back is an admin's job, and needs no password of theirs or the
    account's; the admin's own account is guarded as anyone's (their token is stolen as
    easily)."""
    async with users_server(make_config, users_database) as stub:
        admin = await register(stub, "root@example.com")  # the first account: an admin
        lou = await register(stub, "lou@example.com")
        as_admin = calling(OWNER, admin.tokens.access_token)
        before = bcrypt_calls.count
        moved = await stub.UpdateUser(
            users_pb2.UpdateUserRequest(id=lou.user.id, email="lou.back@example.com"),
            metadata=as_admin,
        )
        assert moved.user.email == "lou.back@example.com"
        await stub.DeleteUser(users_pb2.DeleteUserRequest(id=lou.user.id), metadata=as_admin)
        assert bcrypt_calls.count == before, "no password was checked"
        await wrong(login(stub, "lou.back@example.com", OWNER, PASSWORD))

        await password_missing(change_email(stub, admin, THIEF, "thief@example.com"))
        await password_missing(delete_account(stub, admin, THIEF))
        await wrong(change_email(stub, admin, THIEF, "thief@example.com", WRONG))
        me = await stub.GetMe(users_pb2.GetMeRequest(), metadata=as_admin)
        assert me.user.email == "root@example.com"


async def test_failing_addresses_past_the_accounts_ceiling_wait_at_once_and_the_owner_never(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """A token guessing from many addresses fills the account's ceiling as logins do; its owner,
    from an address that never failed, logs in and changes the password at once."""
    async with users_server(
        make_config, users_database, LOGIN_FAILURES_PER_ACCOUNT="3/15minutes"
    ) as stub:
        victim = await register(stub, "xia@example.com")
        for n in range(4):  # four addresses, one failure each: the fourth passes the ceiling
            await wrong(change_password(stub, victim, f"192.0.2.{n}", WRONG))
        wait = await too_many_attempts(
            change_password(stub, victim, "192.0.2.3", WRONG), "this address"
        )
        assert 0 < wait <= 1.0
        assert (await login(stub, "xia@example.com", OWNER, PASSWORD)).user.id == victim.user.id
        assert (await change_password(stub, victim, OWNER, PASSWORD)).user.id == victim.user.id


async def test_wrong_current_passwords_across_accounts_refuse_the_address_for_the_window(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Tokens of several accounts, each guessed a little: the address's failures add up."""
    async with users_server(
        make_config, users_database, LOGIN_FAILURES_PER_IP="3/15minutes"
    ) as stub:
        stolen = [await register(stub, f"y{n}@example.com") for n in range(3)]
        for signed in stolen:
            await wrong(change_password(stub, signed, THIEF, WRONG))
        wait = await too_many_attempts(
            change_password(stub, stolen[0], THIEF, PASSWORD), "failed logins from this address"
        )
        assert 800 < wait <= 900
        assert (await login(stub, "y0@example.com", OWNER, PASSWORD)).user.id == stolen[0].user.id


async def test_rotating_addresses_within_an_ipv6_64_buys_no_fresh_failed_logins(
    make_config: Callable[..., RuntimeConfig], users_database: str, bcrypt_calls: BcryptCalls
) -> None:
    async with users_server(make_config, users_database) as stub:
        victim = await register(stub, "zoe@example.com")
        # Each guess from another address of one /64: together, one address's free failures.
        for n in range(1, FREE_FAILURES + 2):
            await wrong(login(stub, "zoe@example.com", f"2001:db8:0:1::{n}", WRONG))
        before = bcrypt_calls.count
        wait = await too_many_attempts(
            login(stub, "zoe@example.com", "2001:db8:0:1:ffff:ffff:ffff:ffff", PASSWORD),
            "for this account from this address",
        )
        assert 0 < wait <= 1.0
        await too_many_attempts(
            change_password(stub, victim, "2001:db8:0:1::abcd", PASSWORD), "this address"
        )
        assert bcrypt_calls.count == before
        # The next /64 is another address: its first try is checked.
        assert (await login(stub, "zoe@example.com", "2001:db8:0:2::1", PASSWORD)).user.email


async def test_rotating_within_an_ipv6_64_across_accounts_fills_one_addresss_failures(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    async with users_server(
        make_config, users_database, LOGIN_FAILURES_PER_IP="3/15minutes"
    ) as stub:
        await register(stub, "amy@example.com")
        for n in range(3):  # credential stuffing, a fresh address of the /64 for each guess
            await wrong(login(stub, f"guess{n}@example.com", f"2001:db8:5:6::{n + 1}", WRONG))
        wait = await too_many_attempts(
            login(stub, "amy@example.com", "2001:db8:5:6::99", PASSWORD),
            "failed logins from this address",
        )
        assert 800 < wait <= 900


# --- through the facade --------------------------------------------------------------------


async def test_through_the_facade_a_guessed_current_password_is_429_too_many_attempts(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    facade_in_front: FacadeInFront,
) -> None:
    config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4")
    async with running(config, build_users, port=0, grace=0) as users:
        addresses = {"users": f"127.0.0.1:{users.port}"}
        async with facade_in_front(addresses, TRUST_PROXY="true") as client:
            registered = await client.post(
                "/api/v1/auth/register",
                json={"email": "ben@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": OWNER},
            )
            assert registered.status == 201, await registered.text()
            signed = (await registered.json())["data"]
            path = f"/api/v1/users/{signed['user']['id']}"
            headers = {
                "Authorization": f"Bearer {signed['tokens']['accessToken']}",
                "X-Forwarded-For": THIEF,
            }
            guess = {"currentPassword": WRONG, "newPassword": NEW}
            answers = []
            for _ in range(FREE_FAILURES + 2):
                response = await client.put(path, json=guess, headers=headers)
                body = await response.json()
                answers.append(
                    (response.status, body["error"], response.headers.get("Retry-After"))
                )
            assert answers[:-1] == [(401, "INVALID_CREDENTIALS", None)] * (FREE_FAILURES + 1)
            assert answers[-1] == (429, "TOO_MANY_ATTEMPTS", "1")


async def test_through_the_facade_a_stolen_token_deleting_or_moving_the_account_needs_the_password(
    make_config: Callable[..., RuntimeConfig],
    users_database: str,
    facade_in_front: FacadeInFront,
) -> None:
    """DELETE takes the current password in its body: without it 422 naming currentPassword,
    a wrong one 401 and then 429 with Retry-After as at login; the owner's own, from home,
    deletes. An admin's DELETE of another account needs no body."""
    config = make_config("users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4")
    async with running(config, build_users, port=0, grace=0) as users:
        addresses = {"users": f"127.0.0.1:{users.port}"}
        async with facade_in_front(addresses, TRUST_PROXY="true") as client:

            async def register_over_rest(email: str) -> dict[str, Any]:
                registered = await client.post(
                    "/api/v1/auth/register",
                    json={"email": email, "password": PASSWORD},
                    headers={"X-Forwarded-For": OWNER},
                )
                assert registered.status == 201, await registered.text()
                signed: dict[str, Any] = (await registered.json())["data"]
                return signed

            admin = await register_over_rest("root@example.com")  # the first: an admin
            cy = await register_over_rest("cy@example.com")
            dee = await register_over_rest("dee@example.com")
            path = f"/api/v1/users/{cy['user']['id']}"

            def bearer(signed: dict[str, Any], address: str) -> dict[str, str]:
                token = signed["tokens"]["accessToken"]
                return {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}

            thief = bearer(cy, THIEF)
            for response in (
                await client.delete(path, headers=thief),
                await client.delete(path, json={}, headers=thief),
                await client.put(path, json={"email": "thief@example.com"}, headers=thief),
            ):
                body = await response.json()
                assert (response.status, body["error"]) == (422, "VALIDATION_ERROR"), body
                assert [f["field"] for f in body["details"]["fields"]] == ["currentPassword"]

            answers = []
            for n in range(FREE_FAILURES + 2):
                response = (
                    await client.put(
                        path,
                        json={"email": "thief@example.com", "currentPassword": WRONG},
                        headers=thief,
                    )
                    if n % 2
                    else await client.delete(path, json={"currentPassword": WRONG}, headers=thief)
                )
                body = await response.json()
                answers.append(
                    (response.status, body["error"], response.headers.get("Retry-After"))
                )
            assert answers[:-1] == [(401, "INVALID_CREDENTIALS", None)] * (FREE_FAILURES + 1)
            assert answers[-1] == (429, "TOO_MANY_ATTEMPTS", "1")

            owned = await client.delete(
                path, json={"currentPassword": PASSWORD}, headers=bearer(cy, OWNER)
            )
            assert owned.status == 200, await owned.text()
            login = await client.post(
                "/api/v1/auth/login", json={"email": "cy@example.com", "password": PASSWORD}
            )
            assert (login.status, (await login.json())["error"]) == (401, "INVALID_CREDENTIALS")

            taken_back = await client.delete(
                f"/api/v1/users/{dee['user']['id']}", headers=bearer(admin, OWNER)
            )
            assert taken_back.status == 200, await taken_back.text()
