"""Keys in the started system: only the users process can sign a user's token, so the processes
a user's shell or git command lives closest to (terminal, workspace) hold no private key in their
environment or open files, and a forged token gets nowhere, through the facade or directly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import grpc
import jwt
import pytest

from services.runtime.auth import bearer
from services.runtime.keys import parse_public_keys
from tests.forged_tokens import AUTHENTICATED_RPC, forged_tokens
from tests.system_harness import ROUTE_OF, Account, System, child_pids, request

# Whose private key each process may hold: users signs users' tokens, the facade and the other
# services their own service tokens (theirs reach the users service's account deletions only);
# nobody holds another's.
SERVICE_TOKEN_SIGNERS = ("facade", "assistant", "terminal", "workspace", "portfolio")
PRIVATE_KEYS = ("token_signing_key", *(f"{name}_service_key" for name in SERVICE_TOKEN_SIGNERS))
MAY_HOLD = {
    "users": {"token_signing_key"},
    **{name: {f"{name}_service_key"} for name in SERVICE_TOKEN_SIGNERS},
}
SECRET_VARIABLES = ("JWT_SECRET", "TOKEN_PRIVATE_KEY_FILE", "FACADE_SERVICE_KEY_FILE")


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(): v.decode("utf-8", "replace") for k, _, v in pairs}


def open_files_of(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue  # closed meanwhile
    return found


@pytest.fixture(scope="module")
def secrets_dir(system: System) -> Path:
    """The system's var/secrets/, as its users process was told (development: keys made there)."""
    users = child_pids(system.output)["users"]
    return Path(environ_of(users)["STOCKFOLIO_VAR_DIR"]) / "secrets"


def test_the_private_keys_are_readable_by_their_owner_only(secrets_dir: Path) -> None:
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for name in PRIVATE_KEYS:
        assert stat.S_IMODE((secrets_dir / name).stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in (secrets_dir / name).read_bytes()
        assert parse_public_keys((secrets_dir / f"{name}.pub").read_text(), name)


@pytest.mark.parametrize("process", ["terminal", "workspace", "assistant", "portfolio", "facade"])
def test_a_process_other_than_users_holds_no_users_private_key(
    system: System, secrets_dir: Path, process: str
) -> None:
    pid = child_pids(system.output)[process]
    environment = environ_of(pid)
    files = open_files_of(pid)
    assert files, "the process's open files were listed"
    for name in PRIVATE_KEYS:
        if name in MAY_HOLD.get(process, set()):
            continue
        path = secrets_dir / name
        content = path.read_text()
        body = "".join(content.splitlines()[1:-1])
        assert str(path) not in files, f"{process} has {name} open"
        for variable, value in environment.items():
            assert body not in value.replace("\n", ""), f"{process}: {variable} holds {name}"
            assert not value.endswith(f"/{name}"), f"{process}: {variable} names {name}"
    assert not set(SECRET_VARIABLES) & set(environment), f"{process} was given a key variable"
    assert "PRIVATE KEY" not in "".join(environment.values())


def test_tokens_name_the_users_key_and_forged_ones_are_refused_through_the_facade(
    system: System, account: Account, secrets_dir: Path
) -> None:
    public_pem = (secrets_dir / "token_signing_key.pub").read_text()
    (kid,) = parse_public_keys(public_pem, "token_signing_key.pub")
    assert jwt.get_unverified_header(account.access_token) == {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": kid,
    }
    for service, path in ROUTE_OF.items():
        assert request("GET", system.facade_url + path, token=account.access_token).status < 400
        for kind, token in forged_tokens(kid, public_pem).items():
            answer = request("GET", system.facade_url + path, token=token)
            assert answer.status == 401, (service, kind, answer.body)
            assert answer.body["error"] == "TOKEN_INVALID", (service, kind, answer.body)


def test_forged_tokens_are_refused_by_every_service_reached_directly(
    system: System, secrets_dir: Path
) -> None:
    public_pem = (secrets_dir / "token_signing_key.pub").read_text()
    (kid,) = parse_public_keys(public_pem, "token_signing_key.pub")
    for service, port in system.grpc_ports.items():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            rpc = channel.unary_unary(AUTHENTICATED_RPC[service])
            for kind, token in forged_tokens(kid, public_pem).items():
                with pytest.raises(grpc.RpcError) as raised:
                    rpc(b"", metadata=(bearer(token),), timeout=10)
                code = raised.value.code()
                assert code == grpc.StatusCode.UNAUTHENTICATED, (service, kind)
