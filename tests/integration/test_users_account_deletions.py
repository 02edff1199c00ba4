"""The users service's record of deleted accounts (ListAccountDeletions): a tombstone written in
the transaction that deletes the account, numbered in commit order, readable by the other
services with their own service tokens and by nobody else, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.config import RuntimeConfig
from tests.conftest import facade_credentials, service_credentials, users_server
from tests.rpc_errors import expect_error

PASSWORD = "correct-horse-9"
Stub = users_pb2_grpc.UsersServiceStub


async def register(stub: Stub, email: str) -> users_pb2.RegisterResponse:
    reply: users_pb2.RegisterResponse = await stub.Register(
        users_pb2.RegisterRequest(email=email, password=PASSWORD)
    )
    return reply


def bearer(signed: users_pb2.RegisterResponse) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {signed.tokens.access_token}"),)


async def delete_own(stub: Stub, signed: users_pb2.RegisterResponse) -> None:
    await stub.DeleteUser(
        users_pb2.DeleteUserRequest(id=signed.user.id, current_password=PASSWORD),
        metadata=bearer(signed),
    )


async def deletions(
    stub: Stub, after: int = 0, limit: int = 0, issuer: str = "portfolio"
) -> users_pb2.ListAccountDeletionsResponse:
    reply: users_pb2.ListAccountDeletionsResponse = await stub.ListAccountDeletions(
        users_pb2.ListAccountDeletionsRequest(after_sequence=after, limit=limit),
        metadata=service_credentials(issuer).metadata(),
    )
    return reply


async def test_a_deleted_account_leaves_a_tombstone_each_service_reads_in_order(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    async with users_server(make_config, users_database) as stub:
        admin = await register(stub, "ann@example.com")  # the first account: an admin
        bob, cid, dee = [await register(stub, f"{n}@example.com") for n in ("bob", "cid", "dee")]
        assert (await deletions(stub)).last_sequence == 0
        before = datetime.now(UTC)
        await delete_own(stub, bob)
        # An admin's deletion of another account is recorded as the owner's own is.
        await stub.DeleteUser(users_pb2.DeleteUserRequest(id=dee.user.id), metadata=bearer(admin))
        listed = await deletions(stub)
        assert [(d.user_id, d.sequence) for d in listed.deletions] == [
            (bob.user.id, 1),
            (dee.user.id, 2),
        ]
        assert listed.last_sequence == 2
        when = listed.deletions[0].deleted_at.ToDatetime(UTC)
        assert before - timedelta(seconds=1) <= when <= datetime.now(UTC)
        # After a sequence, and a page at a time; each service reads the same record.
        for issuer in ("assistant", "terminal", "workspace", "portfolio", "facade"):
            later = await deletions(stub, after=1, issuer=issuer)
            assert [d.user_id for d in later.deletions] == [dee.user.id], issuer
        first = await deletions(stub, limit=1)
        assert [d.sequence for d in first.deletions] == [1]
        assert first.last_sequence == 2
        assert (await deletions(stub, after=2)).deletions == []
        # The account that stays is not listed.
        assert cid.user.id not in {d.user_id for d in listed.deletions}


async def test_a_refused_deletion_records_nothing(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """The tombstone commits with the deletion or not at all: the last admin's refusal, or a
    wrong password, leaves no account for the services to erase."""
    async with users_server(make_config, users_database) as stub:
        admin = await register(stub, "ann@example.com")
        await expect_error(
            stub.DeleteUser(
                users_pb2.DeleteUserRequest(id=admin.user.id, current_password=PASSWORD),
                metadata=bearer(admin),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        eve = await register(stub, "eve@example.com")
        await expect_error(
            stub.DeleteUser(
                users_pb2.DeleteUserRequest(id=eve.user.id, current_password="wrong-horse-9"),
                metadata=bearer(eve),
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        listed = await deletions(stub)
        assert (list(listed.deletions), listed.last_sequence) == ([], 0)


async def test_deletions_at_once_are_numbered_without_gaps_in_commit_order(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """Numbers are given one deletion at a time, so a follower that has read number n has
    read every lower one: none commits later under a lower number."""
    async with users_server(make_config, users_database) as stub:
        await register(stub, "ann@example.com")
        accounts = [await register(stub, f"u{n}@example.com") for n in range(8)]
        await asyncio.gather(*(delete_own(stub, signed) for signed in accounts))
        listed = await deletions(stub)
        assert [d.sequence for d in listed.deletions] == list(range(1, 9))
        assert {d.user_id for d in listed.deletions} == {a.user.id for a in accounts}


async def test_only_services_read_the_deletions(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """A user's token, even an admin's, is refused (PERMISSION_DENIED); no token at all is
    UNAUTHENTICATED; a service token meant for another service is refused too."""
    async with users_server(make_config, users_database) as stub:
        admin = await register(stub, "ann@example.com")
        user = await register(stub, "bob@example.com")
        request = users_pb2.ListAccountDeletionsRequest()
        for signed in (admin, user):
            error = await expect_error(
                stub.ListAccountDeletions(request, metadata=bearer(signed)),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert "only Stockfolio services" in (error.details() or "")
        await expect_error(stub.ListAccountDeletions(request), grpc.StatusCode.UNAUTHENTICATED)
        elsewhere = facade_credentials("portfolio").metadata()
        await expect_error(
            stub.ListAccountDeletions(request, metadata=elsewhere),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        await expect_error(
            stub.ListAccountDeletions(
                users_pb2.ListAccountDeletionsRequest(after_sequence=-1),
                metadata=service_credentials("portfolio").metadata(),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
