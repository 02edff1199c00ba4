"""Token keys: ids derived from the key, PEM sets for rollovers, development pairs made once, and
who may hold which private key (production refuses to start without its keys)."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.runtime.config import ConfigError, RuntimeConfig, load_runtime_config
from services.runtime.keys import (
    SigningKey,
    TokenKeyError,
    key_id,
    make_key_pair,
    parse_public_keys,
)
from tests.conftest import TEST_SERVICE_KEY, TEST_USER_KEY, token_environment

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"STOCKFOLIO_ENV": "production", "DATABASE_URL": "postgresql://db/stockfolio"}


def load(service: str, tmp_path: Path, **environ: str) -> RuntimeConfig:
    return load_runtime_config(service, {"STOCKFOLIO_VAR_DIR": str(tmp_path / "var"), **environ})


def test_the_key_id_is_the_rfc_7638_thumbprint() -> None:
    # RFC 8037, appendix A.2 and A.3: the Ed25519 example key and its thumbprint.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert key_id(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_a_public_key_set_holds_every_pem_block_by_kid_and_ignores_comments() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    text = f"# retiring\n{old.public_pem()}\n# current\n{new.public_pem()}"
    assert set(parse_public_keys(text, "TOKEN_PUBLIC_KEYS")) == {old.kid, new.kid}
    one_line = new.public_pem().replace("\n", "\\n")
    assert set(parse_public_keys(one_line, "TOKEN_PUBLIC_KEYS")) == {new.kid}


def test_a_public_key_set_without_an_ed25519_key_is_refused() -> None:
    with pytest.raises(TokenKeyError, match="TOKEN_PUBLIC_KEYS holds no PEM public key"):
        parse_public_keys("ssh-ed25519 AAAA...", "TOKEN_PUBLIC_KEYS")
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(TokenKeyError, match="not Ed25519"):
        parse_public_keys(rsa_pem, "TOKEN_PUBLIC_KEYS")


def test_a_made_pair_is_private_to_its_owner_and_its_public_half_is_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secrets" / "token_signing_key"
    key = make_key_pair(path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = path.with_name("token_signing_key.pub")
    assert stat.S_IMODE(public.stat().st_mode) & 0o444 == 0o444
    assert set(parse_public_keys(public.read_text(), "pub")) == {key.kid}
    assert make_key_pair(path).kid == key.kid, "made once, then kept"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "token_signing_key",
        "token_signing_key.pub",
    ], "no temporary file is left behind"


def test_processes_starting_together_agree_on_one_key_pair(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token_signing_key"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "services.runtime.keys", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = {process.communicate(timeout=60)[0].splitlines()[0] for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert outputs == {f"kid {make_key_pair(path).kid}"}


def test_development_gives_every_process_the_same_users_key_made_once(tmp_path: Path) -> None:
    users = load("users", tmp_path)
    terminal = load("terminal", tmp_path)
    # The facade keeps no database (database=False: no URL is asked of it in production).
    facade = load_runtime_config(
        "facade", {"STOCKFOLIO_VAR_DIR": str(tmp_path / "var")}, database=False
    )
    assert users.token_keys.signing is not None
    assert set(terminal.token_keys.users) == {users.token_keys.signing.kid}
    assert set(facade.token_keys.users) == {users.token_keys.signing.kid}
    assert facade.token_keys.service_signing is not None
    trusted = terminal.token_keys.services[facade.token_keys.service_signing.kid]
    assert trusted.issuer == "facade"
    assert terminal.token_keys.signing is None
    assert facade.token_keys.signing is None, "the facade cannot sign a user's token"
    assert users.token_keys.service_signing is None


def test_development_gives_each_following_service_a_service_key_only_users_trusts(
    tmp_path: Path,
) -> None:
    """The services that follow account deletions sign their own service tokens, each with a
    key of its own that the users service trusts as theirs, and no other service does: a
    terminal's key reaches no portfolio's internal RPC."""
    users = load("users", tmp_path)
    issuers = {name: load(name, tmp_path) for name in ("assistant", "terminal", "workspace")}
    portfolio = load("portfolio", tmp_path)
    issuers["portfolio"] = portfolio
    for name, config in issuers.items():
        own = config.token_keys.service_signing
        assert own is not None, name
        assert users.token_keys.services[own.kid].issuer == name
        assert config.token_keys.signing is None, f"{name} cannot sign a user's token"
    kids = {
        config.token_keys.service_signing.kid
        for config in issuers.values()
        if config.token_keys.service_signing
    }
    assert len(kids) == 4, "a key each"
    assert not kids & set(portfolio.token_keys.services), "only the users service trusts them"
    assert {key.issuer for key in portfolio.token_keys.services.values()} == {"facade"}


def test_a_process_that_only_verifies_never_opens_a_private_key(tmp_path: Path) -> None:
    """In a fresh var/, the terminal's config makes the pairs in a child process: the private
    files appear, yet this process never opened one (Python's audit hook sees every open)."""
    program = """
import json, sys
from pathlib import Path
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
from services.runtime.config import load_runtime_config
config = load_runtime_config("terminal", {"STOCKFOLIO_VAR_DIR": sys.argv[1]})
print(json.dumps({"opened": opened, "users": sorted(config.token_keys.users)}))
"""
    var_dir = tmp_path / "var"
    done = subprocess.run(
        [sys.executable, "-c", program, str(var_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    secrets_dir = var_dir / "secrets"
    for private in ("token_signing_key", "facade_service_key"):
        assert (secrets_dir / private).exists(), "the child made the pair"
        assert not any(path.endswith(f"/{private}") for path in report["opened"]), report
    assert str(secrets_dir / "token_signing_key.pub") in report["opened"]
    users_key = make_key_pair(secrets_dir / "token_signing_key")
    assert report["users"] == [users_key.kid]


def test_a_non_users_process_ignores_the_users_private_key_file(tmp_path: Path) -> None:
    unreadable = tmp_path / "users.pem"
    unreadable.write_bytes(TEST_USER_KEY.private_pem())
    unreadable.chmod(0)
    for path in (unreadable, tmp_path / "absent.pem"):
        environ = {**token_environment("terminal"), "TOKEN_PRIVATE_KEY_FILE": str(path)}
        config = load("terminal", tmp_path, **PRODUCTION, **environ)
        assert config.token_keys.signing is None
        assert set(config.token_keys.users) == {TEST_USER_KEY.kid}


@pytest.mark.parametrize(
    ("service", "missing"),
    [
        ("users", "TOKEN_PRIVATE_KEY_FILE"),
        ("terminal", "TOKEN_PUBLIC_KEYS"),
        ("workspace", "FACADE_SERVICE_PUBLIC_KEYS"),
        ("facade", "TOKEN_PUBLIC_KEYS"),
        ("facade", "FACADE_SERVICE_KEY_FILE"),
        ("users", "PORTFOLIO_SERVICE_PUBLIC_KEYS"),
        ("portfolio", "PORTFOLIO_SERVICE_KEY_FILE"),
        ("terminal", "TERMINAL_SERVICE_KEY_FILE"),
    ],
)
def test_production_refuses_to_start_without_its_keys_and_names_the_variable(
    tmp_path: Path, service: str, missing: str
) -> None:
    environ = {**PRODUCTION, **token_environment(service)}
    del environ[missing]
    with pytest.raises(
        ConfigError, match=f"{missing}.* must be set when STOCKFOLIO_ENV=production"
    ):
        load(service, tmp_path, **environ)
    assert not (tmp_path / "var" / "secrets").exists(), "production never makes a key"


def test_production_reads_keys_from_files(tmp_path: Path) -> None:
    public = tmp_path / "token-public-keys.pem"
    public.write_text(f"{SigningKey.generate().public_pem()}{TEST_USER_KEY.public_pem()}")
    service_public = tmp_path / "facade-service-public-keys.pem"
    service_public.write_text(TEST_SERVICE_KEY.public_pem())
    config = load(
        "portfolio",
        tmp_path,
        **PRODUCTION,
        TOKEN_PUBLIC_KEYS_FILE=str(public),
        FACADE_SERVICE_PUBLIC_KEYS_FILE=str(service_public),
        PORTFOLIO_SERVICE_KEY_FILE=token_environment("portfolio")["PORTFOLIO_SERVICE_KEY_FILE"],
    )
    assert TEST_USER_KEY.kid in config.token_keys.users
    assert len(config.token_keys.users) == 2, "two keys during a rollover"
    assert set(config.token_keys.services) == {TEST_SERVICE_KEY.kid}


def test_the_users_service_verifies_with_its_own_key_and_the_configured_ones(
    tmp_path: Path,
) -> None:
    retiring = SigningKey.generate()
    environ = {
        **PRODUCTION,
        **token_environment("users"),
        "TOKEN_PUBLIC_KEYS": retiring.public_pem(),
    }
    config = load("users", tmp_path, **environ)
    assert set(config.token_keys.users) == {retiring.kid, TEST_USER_KEY.kid}


@pytest.mark.parametrize(
    ("variable", "content", "message"),
    [
        ("TOKEN_PRIVATE_KEY_FILE", None, "cannot read"),
        ("TOKEN_PRIVATE_KEY_FILE", b"not a key", "not an unencrypted PEM private key"),
        ("TOKEN_PUBLIC_KEYS_FILE", b"not a key", "holds no PEM public key"),
    ],
)
def test_an_unreadable_or_malformed_key_names_its_variable(
    tmp_path: Path, variable: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    environ = {**PRODUCTION, **token_environment("users"), variable: str(path)}
    with pytest.raises(ConfigError, match=variable) as raised:
        load("users", tmp_path, **environ)
    assert message in str(raised.value)


def test_a_private_key_never_appears_in_the_config_repr(tmp_path: Path) -> None:
    config = load("users", tmp_path, **token_environment("users"))
    text = repr(config)
    assert "PRIVATE" not in text
    assert TEST_USER_KEY.private_pem().decode().splitlines()[1] not in text


def test_migrations_need_no_key_even_in_production(tmp_path: Path) -> None:
    config = load_runtime_config(
        "users", {"STOCKFOLIO_VAR_DIR": str(tmp_path / "var"), **PRODUCTION}, tokens=False
    )
    assert config.token_keys.users == {}
    assert config.token_keys.signing is None
