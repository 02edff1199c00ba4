"""Production makes no admin by registration order: `python -m services.users admin create`
does, run as an operator would, against the users database on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.auth import bearer as authorization
from services.runtime.config import RuntimeConfig
from services.runtime.server import running
from services.users.server import build as build_users
from tests.rpc_errors import expect_error

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-9"

Production = Callable[[], contextlib.AbstractAsyncContextManager[users_pb2_grpc.UsersServiceStub]]


@pytest.fixture
def production_users(make_config: Callable[..., RuntimeConfig], users_database: str) -> Production:
    """The real users server in production mode, with STOCKFOLIO_ADMIN_EMAIL set (it must not
    matter there)."""

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
        config = make_config(
            "users",
            STOCKFOLIO_ENV="production",
            STOCKFOLIO_ADMIN_EMAIL="boss@example.com",
            USERS_DATABASE_URL=users_database,
            BCRYPT_COST="4",
        )
        async with (
            running(config, build_users, port=0, grace=0) as service,
            grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        ):
            yield users_pb2_grpc.UsersServiceStub(channel)

    return start


AdminCreate = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def admin_create(users_database: str, tmp_path: Path) -> AdminCreate:
    """`admin_create(*args, stdin="")` runs the command in its own process on the test's users
    database; its exit code, standard output and error."""

    async def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
            "STOCKFOLIO_ENV": "test",
            "STOCKFOLIO_VAR_DIR": str(tmp_path / "var"),
            "USERS_DATABASE_URL": users_database,
            "BCRYPT_COST": "4",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.users",
            "admin",
            "create",
            *args,
            cwd=ROOT,
            env=environ,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    return run


def bearer(response: users_pb2.LoginResponse) -> tuple[tuple[str, str], ...]:
    return (authorization(response.tokens.access_token),)


async def test_in_production_the_first_user_and_the_admin_email_register_as_plain_users(
    production_users: Production,
) -> None:
    async with production_users() as stub:
        first = await stub.Register(
            users_pb2.RegisterRequest(email="boss@example.com", password=PASSWORD)
        )
        assert list(first.user.roles) == [users_pb2.ROLE_USER]
        await expect_error(
            stub.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(first)),
            grpc.StatusCode.PERMISSION_DENIED,
        )


async def test_the_command_creates_an_admin_who_logs_in_and_lists_users(
    production_users: Production, admin_create: AdminCreate
) -> None:
    code, out, err = await admin_create(
        "--email", "Root@Example.com", "--name", "Root", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    assert (code, err) == (0, "")
    assert out.startswith("created admin root@example.com (id ")
    async with production_users() as stub:
        await stub.Register(users_pb2.RegisterRequest(email="ann@example.com", password=PASSWORD))
        admin = await stub.Login(
            users_pb2.LoginRequest(email="root@example.com", password=PASSWORD)
        )
        assert list(admin.user.roles) == [users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN]
        assert admin.user.name == "Root"
        listed = await stub.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(admin))
        assert sorted(u.email for u in listed.users) == ["ann@example.com", "root@example.com"]


async def test_the_command_promotes_an_existing_user_without_asking_a_password(
    production_users: Production, admin_create: AdminCreate
) -> None:
    async with production_users() as stub:
        plain = await stub.Register(
            users_pb2.RegisterRequest(email="cy@example.com", password=PASSWORD)
        )
        assert list(plain.user.roles) == [users_pb2.ROLE_USER]
        code, out, err = await admin_create("--email", "CY@example.com")
        assert (code, err) == (0, "")
        assert out == f"cy@example.com is now an admin (id {plain.user.id}) from its next login.\n"
        admin = await stub.Login(users_pb2.LoginRequest(email="cy@example.com", password=PASSWORD))
        assert list(admin.user.roles) == [users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN]
        listed = await stub.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(admin))
        assert [u.email for u in listed.users] == ["cy@example.com"]
    again = await admin_create("--email", "cy@example.com")
    assert again == (0, f"cy@example.com is already an admin (id {plain.user.id}).\n", "")


async def test_the_command_refuses_a_weak_password_and_creates_nothing(
    production_users: Production, admin_create: AdminCreate
) -> None:
    code, out, err = await admin_create(
        "--email", "dee@example.com", "--password-stdin", stdin="short\n"
    )
    assert (code, out) == (1, "")
    assert "password: must be at least 8 characters" in err
    without_terminal = await admin_create("--email", "d@x.io")
    assert without_terminal[0] == 1
    assert "pass --password-stdin" in without_terminal[2]
    async with production_users() as stub:
        await expect_error(
            stub.Login(users_pb2.LoginRequest(email="dee@example.com", password="short")),
            grpc.StatusCode.UNAUTHENTICATED,
        )
