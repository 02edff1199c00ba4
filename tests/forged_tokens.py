"""Tokens an attacker could make without the users service's private key, for tests that show
every service refuses them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from services.runtime.keys import SigningKey

# One authenticated RPC per domain service, called with an empty request.
AUTHENTICATED_RPC = {
    "users": "/stockfolio.users.v1.UsersService/GetMe",
    "assistant": "/stockfolio.assistant.v1.AssistantService/ListSessions",
    "terminal": "/stockfolio.terminal.v1.TerminalService/ListTerminals",
    "workspace": "/stockfolio.workspace.v1.WorkspaceService/ListProjects",
    "portfolio": "/stockfolio.portfolio.v1.PortfolioService/ListPortfolios",
}


def access_claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a well-formed access token, with some replaced (None: left out)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": "stockfolio",
        "aud": "stockfolio",
        "sub": "u-1",
        "sid": "s-1",
        "email": "ada@example.com",
        "roles": ["user"],
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def admin_claims(**overrides: Any) -> dict[str, Any]:
    """What a forger wants: an admin's access token, well formed in every other way."""
    admin = {"sub": "forged-admin", "sid": "forged-session", "email": "root@example.com"}
    return access_claims(**{**admin, "roles": ["user", "admin"], **overrides})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_signed(claims: dict[str, Any], secret: bytes, *, kid: str) -> str:
    """An HS256 token built by hand: PyJWT itself refuses a PEM key as an HMAC secret."""
    body = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    content = f"{header}.{_b64(json.dumps(body).encode())}"
    return f"{content}.{_b64(hmac.new(secret, content.encode(), hashlib.sha256).digest())}"


def forged_tokens(kid: str, public_pem: str) -> dict[str, str]:
    """Admin tokens naming the real key's `kid`, each signed some way but with the real key:
    another Ed25519 key, HS256 keyed with the (public) PEM, and no signature at all."""
    claims = admin_claims()
    return {
        "another-ed25519-key": jwt.encode(
            claims, SigningKey.generate().private, algorithm="EdDSA", headers={"kid": kid}
        ),
        "hs256-keyed-with-the-public-key": hmac_signed(claims, public_pem.encode(), kid=kid),
        "alg-none": jwt.encode(claims, "", algorithm="none", headers={"kid": kid}),
    }
