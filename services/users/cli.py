"""`python -m services.users admin create --email ...`: make an admin, as Django's
createsuperuser does. Creates the account (asking for its password) or promotes an existing
one. It runs with the service's own environment and database; nothing is served."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TextIO

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from services.runtime.config import ConfigError, load_runtime_config
from services.runtime.db import Database
from services.runtime.errors import DomainError
from services.users.admins import create_admin, find_user, promote
from services.users.config import load_users_config
from services.users.passwords import PasswordHasher

PROG = "python -m services.users"


class CommandError(Exception):
    """What to tell the operator before exiting with status 1."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description="Without arguments, runs the users service."
    )
    commands = top.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("admin", help="manage admins")
    actions = admin.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create",
        help="create an admin account, or give an existing account the admin role",
        description="Create an admin account (asking for its password), or give the "
        "existing account with this email the admin role.",
    )
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="", help="display name of a new account")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a new account's password from the first line of standard input",
    )
    return top


def read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    if not stdin.isatty():
        raise CommandError("no terminal to ask for a password on; pass --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise CommandError("the passwords do not match")
    return password


async def admin_create(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> None:
    runtime = load_runtime_config("users")
    settings = load_users_config(runtime)
    db = Database(runtime.database_url)
    try:
        if await find_user(db, args.email) is not None:
            user, changed = await promote(db, args.email)
            if changed:
                print(f"{user.email} is now an admin (id {user.id}) from its next login.", file=out)
            else:
                print(f"{user.email} is already an admin (id {user.id}).", file=out)
            return
        password = read_password(args.password_stdin, stdin)
        hasher = PasswordHasher(settings.bcrypt_cost)
        try:
            user = await create_admin(db, hasher, args.email, password, args.name)
        finally:
            hasher.close()
        print(f"created admin {user.email} (id {user.id}).", file=out)
    finally:
        await db.close()


def main(argv: list[str], stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    try:
        asyncio.run(admin_create(args, stdin, out))
    except ConfigError as error:
        print(f"{PROG}: configuration error: {error}", file=sys.stderr)
        return 1
    except (CommandError, DomainError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        cause = error.orig if isinstance(error, DBAPIError) else error
        print(
            f"{PROG}: the users database refused: {cause}\n"
            "Is it migrated? python -m services.runtime.migrate users",
            file=sys.stderr,
        )
        return 1
    return 0
