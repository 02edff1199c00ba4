"""The Ed25519 keys tokens are signed and checked with: who may hold which half, and where each
half comes from (files and variables in production, pairs made once under var/secrets/ in
development).

The users service alone holds the private key that signs users' tokens; a process that mints
service tokens (the facade; the other domain services, for the users service's internal RPCs)
holds a private key of its own that can sign nothing else: only service tokens naming it, which
only the services that trust its key take, and only for RPCs declared internal. No process but
users can sign anything that passes for a user.

`python -m services.runtime.keys PATH` makes a pair: PATH (private, 0600) and PATH.pub.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# The development pair of the users service, under <var>/secrets/.
USER_TOKEN_KEY = "token_signing_key"  # noqa: S105 - a file name, not a key
# Processes that mint service tokens, each with its own key (`<NAME>_SERVICE_KEY_FILE`) and a
# development pair named `<name>_service_key`, and the services that trust it (internal RPCs
# live on domain services only; each callee holds the public keys of its callers alone, so a
# service's key reaches no other service's internal RPCs): the facade's streams and bridges
# reach every service; the others follow the users service's account deletions.
SERVICE_TOKEN_ISSUERS: Mapping[str, tuple[str, ...]] = {
    "facade": ("users", "assistant", "terminal", "workspace", "portfolio"),
    "assistant": ("users",),
    "terminal": ("users",),
    "workspace": ("users",),
    "portfolio": ("users",),
}
GENERATE_TIMEOUT = 60.0

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_ROOT = Path(__file__).resolve().parents[2]


class TokenKeyError(Exception):
    """A key is missing, unreadable or not Ed25519; the message names the variable or file."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint: derived from the key itself, so a `kid` never needs
    configuring and can never name the wrong key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(jwk.encode()).digest())


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class SigningKey:
    """A private key and its id; what a token's `kid` header names."""

    kid: str
    private: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(key_id(private.public_key()), private)

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise TokenKeyError(f"{source} is not an unencrypted PEM private key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise TokenKeyError(f"{source} is not an Ed25519 key")
        return cls(key_id(private.public_key()), private)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> str:
        return public_pem(self.public)


@dataclass(frozen=True)
class ServiceKey:
    """A public key trusted for service tokens, and the one service it speaks for."""

    issuer: str
    public: Ed25519PublicKey = field(compare=False)


@dataclass(frozen=True)
class TokenKeys:
    """The keys one process holds. Empty by default: verifies nothing, signs nothing."""

    # kid -> key that may sign users' tokens (two during a rollover).
    users: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    # kid -> key that may sign service tokens, with the service it speaks for.
    services: Mapping[str, ServiceKey] = field(default_factory=dict)
    # Users' tokens: the users service only.
    signing: SigningKey | None = field(default=None, repr=False)
    # This process's own service tokens: a service-token issuer (SERVICE_TOKEN_ISSUERS) only.
    service_signing: SigningKey | None = field(default=None, repr=False)


def parse_public_keys(text: str, source: str) -> dict[str, Ed25519PublicKey]:
    """Every `PUBLIC KEY` PEM block in `text` by its kid. Text around the blocks is ignored (a
    comment saying which key is which is welcome); `\\n` escapes allow a one-line variable."""
    blocks = _PEM_BLOCK.findall(text.replace("\\n", "\n"))
    if not blocks:
        raise TokenKeyError(f"{source} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    found: dict[str, Ed25519PublicKey] = {}
    for block in blocks:
        try:
            public = serialization.load_pem_public_key(block.encode())
        except (ValueError, UnsupportedAlgorithm):
            raise TokenKeyError(f"{source} holds a malformed PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise TokenKeyError(f"{source} holds a key that is not Ed25519")
        found[key_id(public)] = public
    return found


def _create_once(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file and hard-link it into place: processes starting together
    agree on whichever landed first, and nobody ever reads a half-written file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    # Created with its final mode: a private key is never readable by others, not even briefly.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def make_key_pair(private_path: Path) -> SigningKey:
    """The pair at `private_path` (0600) and `private_path.pub`, made when absent; the folder is
    made 0700. Only a process allowed to hold this private key may call it."""
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not private_path.exists():
        _create_once(private_path, SigningKey.generate().private_pem(), 0o600)
    key = SigningKey.from_pem(private_path.read_bytes(), str(private_path))
    public_path = private_path.with_name(f"{private_path.name}.pub")
    if not public_path.exists():
        # Derived from whichever private key won the race, so every racer writes the same bytes.
        _create_once(public_path, key.public_pem().encode(), 0o644)
    return key


def development_public_key(var_dir: Path, name: str) -> str:
    """The public half of the development pair `name`, for a process that must never hold its
    private half: when the pair does not exist yet, a short-lived child process makes it, so the
    private bytes never enter this process's memory or file table."""
    public_path = var_dir / "secrets" / f"{name}.pub"
    if not public_path.exists():
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
                [sys.executable, "-m", "services.runtime.keys", str(var_dir / "secrets" / name)],
                cwd=_ROOT,
                capture_output=True,
                text=True,
                timeout=GENERATE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise TokenKeyError(f"cannot make the development key {name}: {error}") from None
        if done.returncode != 0:
            raise TokenKeyError(f"cannot make the development key {name}: {done.stderr.strip()}")
    return public_path.read_text()


Read = Callable[[str], "str | None"]


def _private_key(read: Read, variable: str, *, production: bool, development: Path) -> SigningKey:
    path = read(variable)
    if path is None:
        if production:
            raise TokenKeyError(f"{variable} must be set when STOCKFOLIO_ENV=production")
        return make_key_pair(development)
    try:
        pem = Path(path).read_bytes()
    except OSError as error:
        raise TokenKeyError(f"{variable}: cannot read {path}: {error.strerror}") from None
    return SigningKey.from_pem(pem, variable)


def _public_keys(
    read: Read, variable: str, *, required: bool, development: Callable[[], str] | None
) -> dict[str, Ed25519PublicKey]:
    """Keys from `VARIABLE` (PEM text) and/or `VARIABLE_FILE` (a PEM file)."""
    found: dict[str, Ed25519PublicKey] = {}
    inline = read(variable)
    if inline is not None:
        found.update(parse_public_keys(inline, variable))
    path = read(f"{variable}_FILE")
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise TokenKeyError(f"{variable}_FILE: cannot read {path}: {error.strerror}") from None
        found.update(parse_public_keys(text, f"{variable}_FILE ({path})"))
    if found:
        return found
    if required:
        raise TokenKeyError(
            f"{variable} or {variable}_FILE must be set when STOCKFOLIO_ENV=production"
        )
    if development is None:
        return found
    return parse_public_keys(development(), variable)


def load_token_keys(
    environ: Mapping[str, str], service: str, *, production: bool, var_dir: Path
) -> TokenKeys:
    """The keys `service` may hold, from its environment: a private key only for the users
    service (users' tokens) and for a service-token issuer (its own service tokens)."""

    def read(name: str) -> str | None:
        return environ.get(name, "").strip() or None

    secrets_dir = var_dir / "secrets"
    signing = None
    if service == "users":
        signing = _private_key(
            read,
            "TOKEN_PRIVATE_KEY_FILE",
            production=production,
            development=secrets_dir / USER_TOKEN_KEY,
        )
    users = _public_keys(
        read,
        "TOKEN_PUBLIC_KEYS",
        # The users service verifies with its own key; others must be told the public half.
        required=production and signing is None,
        development=None
        if signing is not None
        else functools.partial(development_public_key, var_dir, USER_TOKEN_KEY),
    )
    if signing is not None:
        users[signing.kid] = signing.public
    service_signing = None
    services: dict[str, ServiceKey] = {}
    for issuer, callees in SERVICE_TOKEN_ISSUERS.items():
        prefix = issuer.upper()
        development = f"{issuer}_service_key"
        if service == issuer:
            service_signing = _private_key(
                read,
                f"{prefix}_SERVICE_KEY_FILE",
                production=production,
                development=secrets_dir / development,
            )
        if service in callees:
            trusted = _public_keys(
                read,
                f"{prefix}_SERVICE_PUBLIC_KEYS",
                required=production,
                development=functools.partial(development_public_key, var_dir, development),
            )
            services.update((kid, ServiceKey(issuer, key)) for kid, key in trusted.items())
    return TokenKeys(
        users=users, services=services, signing=signing, service_signing=service_signing
    )


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit(
            "usage: python -m services.runtime.keys PRIVATE_KEY_PATH  (writes PATH and PATH.pub)"
        )
    path = Path(argv[0])
    key = make_key_pair(path)
    print(f"kid {key.kid}\nprivate {path}\npublic {path}.pub")


if __name__ == "__main__":
    main(sys.argv[1:])
