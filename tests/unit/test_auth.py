"""Tokens (issue, read, reject: EdDSA only, our keys only, by kid) and the short memory of session
checks."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from services.runtime.auth import (
    ServiceCredentials,
    ServiceTokenSigner,
    TokenCodec,
    TokenVerifier,
    TtlMemo,
    bearer_token,
)
from services.runtime.errors import Unauthenticated
from services.runtime.keys import ServiceKey, SigningKey, TokenKeys
from tests.forged_tokens import access_claims, hmac_signed

USER_KEY = SigningKey.generate()
SERVICE_KEY = SigningKey.generate()
FORGER_KEY = SigningKey.generate()


def keys(*users: SigningKey, signing: SigningKey | None = None) -> TokenKeys:
    """Public halves of `users` (USER_KEY when none) and the facade's service key."""
    trusted = users or (USER_KEY,)
    return TokenKeys(
        users={key.kid: key.public for key in trusted},
        services={SERVICE_KEY.kid: ServiceKey("facade", SERVICE_KEY.public)},
        signing=signing,
    )


@pytest.fixture
def codec() -> TokenCodec:
    """The users service's: holds the private key."""
    return TokenCodec(keys(signing=USER_KEY), issuer="stockfolio", access_ttl=900)


@pytest.fixture
def verifier() -> TokenVerifier:
    """What the portfolio service holds: public halves only."""
    return TokenVerifier(keys(), issuer="stockfolio", service="portfolio")


def signed(payload: dict[str, Any], key: SigningKey = USER_KEY, *, kid: str | None = None) -> str:
    headers = {"kid": key.kid if kid is None else kid}
    return jwt.encode(payload, key.private, algorithm="EdDSA", headers=headers)


def reason_of(reader: TokenVerifier, token: str, *, allow_service: bool = False) -> str:
    with pytest.raises(Unauthenticated) as raised:
        reader.read_access(token, allow_service=allow_service)
    return raised.value.reason


def test_an_access_token_round_trips_the_identity(codec: TokenCodec) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    token, expires = codec.issue_access(
        user_id="u-1", session_id="s-1", email="ada@example.com", roles=["user", "admin"]
    )
    identity = codec.read_access(token)
    assert identity.user_id == "u-1"
    assert identity.session_id == "s-1"
    assert identity.email == "ada@example.com"
    assert identity.roles == frozenset({"user", "admin"})
    assert identity.is_admin
    assert identity.token == token
    assert identity.expires_at == expires.replace(microsecond=0)
    assert before + timedelta(seconds=899) <= identity.expires_at <= expires


def test_tokens_are_eddsa_with_the_signing_keys_kid_and_audience(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(user_id="u-1", session_id="s-1", email="", roles=[])
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": USER_KEY.kid}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["iss"], payload["aud"], payload["typ"]) == (
        "stockfolio",
        "stockfolio",
        "access",
    )


def test_a_process_with_only_the_public_key_reads_the_users_tokens(
    codec: TokenCodec, verifier: TokenVerifier
) -> None:
    token, _ = codec.issue_access(user_id="u-1", session_id="s-1", email="", roles=["user"])
    assert verifier.read_access(token).user_id == "u-1"
    refresh, _ = codec.issue_refresh(user_id="u-1", session_id="s-1", token_id="r-1", ttl=60)
    assert verifier.read_refresh(refresh).token_id == "r-1"


def test_only_a_holder_of_the_private_key_can_issue() -> None:
    with pytest.raises(ValueError, match="signing key"):
        TokenCodec(keys(), issuer="stockfolio", access_ttl=900)


def test_a_refresh_token_round_trips_its_claims(codec: TokenCodec) -> None:
    token, expires = codec.issue_refresh(user_id="u-1", session_id="s-1", token_id="r-7", ttl=3600)
    read = codec.read_refresh(token)
    assert (read.user_id, read.session_id, read.token_id) == ("u-1", "s-1", "r-7")
    assert read.expires_at == expires.replace(microsecond=0)


def test_an_expired_token_is_rejected_as_expired(verifier: TokenVerifier) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    token = signed(access_claims(iat=past, exp=past + timedelta(minutes=5)))
    with pytest.raises(Unauthenticated) as raised:
        verifier.read_access(token)
    assert raised.value.reason == "TOKEN_EXPIRED"
    assert raised.value.message == "access token expired"


def test_a_token_signed_with_another_ed25519_key_is_invalid(verifier: TokenVerifier) -> None:
    forger = TokenCodec(keys(FORGER_KEY, signing=FORGER_KEY), issuer="stockfolio", access_ttl=900)
    token, _ = forger.issue_access(user_id="u-1", session_id="s-1", email="", roles=["admin"])
    assert reason_of(verifier, token) == "TOKEN_INVALID"
    # Naming our kid does not help: the signature is checked with our key.
    assert reason_of(
        verifier, signed(access_claims(roles=["admin"]), FORGER_KEY, kid=USER_KEY.kid)
    ) == ("TOKEN_INVALID")


@pytest.mark.parametrize("secret", ["pem", "raw"])
def test_an_hs256_token_keyed_with_our_public_key_is_rejected(
    verifier: TokenVerifier, secret: str
) -> None:
    """The classic algorithm confusion: the public key is public, so as an HMAC secret it
    would let anyone sign."""
    public = (
        USER_KEY.public_pem().encode()
        if secret == "pem"
        else base64.b64decode("".join(USER_KEY.public_pem().splitlines()[1:-1]))[-32:]
    )
    token = hmac_signed(access_claims(roles=["admin"]), public, kid=USER_KEY.kid)
    assert reason_of(verifier, token) == "TOKEN_INVALID"


def test_an_unsigned_alg_none_token_is_rejected(verifier: TokenVerifier) -> None:
    token = jwt.encode(
        access_claims(roles=["admin"]), "", algorithm="none", headers={"kid": USER_KEY.kid}
    )
    assert token.endswith("."), "an alg=none token has an empty signature"
    assert reason_of(verifier, token) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "override",
    [{"aud": "another-system"}, {"aud": "portfolio"}, {"iss": "someone-else"}],
    ids=["wrong-aud", "service-aud", "wrong-iss"],
)
def test_a_token_for_another_audience_or_from_another_issuer_is_rejected(
    verifier: TokenVerifier, override: dict[str, str]
) -> None:
    assert reason_of(verifier, signed(access_claims(**override))) == "TOKEN_INVALID"


@pytest.mark.parametrize("missing", ["sid", "sub", "exp", "typ", "jti", "aud", "iss", "iat"])
def test_a_token_missing_a_required_claim_is_rejected(
    verifier: TokenVerifier, missing: str
) -> None:
    assert reason_of(verifier, signed(access_claims(**{missing: None}))) == "TOKEN_INVALID"


def test_two_public_keys_by_kid_are_both_accepted_during_a_rollover() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    verifier = TokenVerifier(keys(old, new), issuer="stockfolio", service="portfolio")
    for key in (old, new):
        issuer = TokenCodec(keys(key, signing=key), issuer="stockfolio", access_ttl=900)
        token, _ = issuer.issue_access(user_id=key.kid, session_id="s", email="", roles=[])
        assert jwt.get_unverified_header(token)["kid"] == key.kid
        assert verifier.read_access(token).user_id == key.kid


def test_an_unknown_or_missing_kid_is_rejected(verifier: TokenVerifier) -> None:
    assert reason_of(verifier, signed(access_claims(), kid="retired-key")) == "TOKEN_INVALID"
    no_kid = jwt.encode(access_claims(), USER_KEY.private, algorithm="EdDSA")
    assert reason_of(verifier, no_kid) == "TOKEN_INVALID"


def test_a_refresh_token_presented_as_an_access_token_is_rejected(codec: TokenCodec) -> None:
    refresh, _ = codec.issue_refresh(user_id="u-1", session_id="s-1", token_id="r-1", ttl=3600)
    assert reason_of(codec, refresh) == "TOKEN_INVALID"
    access, _ = codec.issue_access(user_id="u-1", session_id="s-1", email="", roles=[])
    with pytest.raises(Unauthenticated) as raised:
        codec.read_refresh(access)
    assert raised.value.reason == "TOKEN_INVALID"


def test_a_tampered_token_is_rejected(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(user_id="u-1", session_id="s-1", email="", roles=["user"])
    header, _, signature = token.split(".")
    forged_payload = signed(access_claims(roles=["admin"]), FORGER_KEY).split(".")[1]
    assert reason_of(codec, f"{header}.{forged_payload}.{signature}") == "TOKEN_INVALID"
    assert reason_of(codec, "not-a-jwt") == "TOKEN_INVALID"


# --- service tokens ------------------------------------------------------------------------


def facade_token(audience: str = "portfolio") -> str:
    return ServiceTokenSigner(SERVICE_KEY, service="facade").issue(audience)[0]


def test_a_service_token_reaches_only_where_service_tokens_are_allowed(
    verifier: TokenVerifier,
) -> None:
    token = facade_token()
    identity = verifier.read_access(token, allow_service=True)
    assert identity.service
    assert identity.user_id == "service:facade"
    assert identity.session_id == ""
    # Where a user's access token is required, a service token never passes.
    fresh = TokenVerifier(keys(), issuer="stockfolio", service="portfolio")
    assert reason_of(fresh, facade_token()) == "TOKEN_INVALID"


def test_a_service_token_names_its_one_callee(verifier: TokenVerifier) -> None:
    assert reason_of(verifier, facade_token("workspace"), allow_service=True) == "TOKEN_INVALID"


def test_a_service_key_signs_nothing_but_its_own_service_tokens(verifier: TokenVerifier) -> None:
    as_user = signed(access_claims(aud="portfolio", iss="facade", roles=["admin"]), SERVICE_KEY)
    assert reason_of(verifier, as_user, allow_service=True) == "TOKEN_INVALID"
    as_other_service = signed(
        access_claims(aud="portfolio", iss="facade", sub="service:terminal", typ="service", sid=""),
        SERVICE_KEY,
    )
    assert reason_of(verifier, as_other_service, allow_service=True) == "TOKEN_INVALID"


def test_the_users_key_does_not_sign_service_tokens(verifier: TokenVerifier) -> None:
    token = signed(access_claims(aud="portfolio", iss="stockfolio", typ="service", sid=""))
    assert reason_of(verifier, token, allow_service=True) == "TOKEN_INVALID"


def test_service_credentials_renew_one_token_per_callee() -> None:
    credentials = ServiceCredentials(ServiceTokenSigner(SERVICE_KEY, service="facade"), "portfolio")
    ((name, value),) = credentials.metadata()
    assert name == "authorization"
    assert credentials.metadata() == ((name, value),), "kept until half its life has passed"
    payload = jwt.decode(value.removeprefix("Bearer "), options={"verify_signature": False})
    assert (payload["iss"], payload["aud"], payload["sub"]) == (
        "facade",
        "portfolio",
        "service:facade",
    )


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((("authorization", "Bearer abc.def.ghi"),), "abc.def.ghi"),
        ((("x-correlation-id", "c"), ("authorization", "bearer  tok ")), "tok"),
        ((("authorization", "BEARER tok"),), "tok"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), None),
        ((("authorization", "Bearer "),), None),
        ((("authorization", "Bearer"),), None),
        ((("authorization", "tok"),), None),
        ((("x-correlation-id", "c"),), None),
        ((), None),
        (None, None),
    ],
)
def test_bearer_token_reads_only_a_bearer_authorization(
    metadata: tuple[tuple[str, str], ...] | None, expected: str | None
) -> None:
    assert bearer_token(metadata) == expected


async def test_ttl_memo_makes_one_lookup_for_concurrent_callers_of_a_key() -> None:
    memo: TtlMemo[bool] = TtlMemo(ttl=60)
    release = asyncio.Event()
    lookups: list[str] = []

    def lookup_for(key: str, answer: bool) -> Any:
        async def lookup() -> bool:
            lookups.append(key)
            await release.wait()
            return answer

        return lookup

    waiting = [asyncio.create_task(memo.get("s-1", lookup_for("s-1", True))) for _ in range(10)]
    other = asyncio.create_task(memo.get("s-2", lookup_for("s-2", False)))
    await asyncio.sleep(0.01)
    assert lookups == ["s-1", "s-2"], "one lookup per key while the first is in flight"
    release.set()
    assert await asyncio.gather(*waiting) == [True] * 10
    assert await other is False
    assert await memo.get("s-1", lookup_for("s-1", False)) is True, "remembered"
    assert lookups == ["s-1", "s-2"]


async def test_ttl_memo_answers_expire_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    # The memo's clock moves only when told: a loaded machine's pause between the first two
    # lookups must not pass for the ttl.
    now = [1000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], time=time.time)
    monkeypatch.setattr("services.runtime.auth.time", clock)
    memo: TtlMemo[bool] = TtlMemo(ttl=0.05)
    answers = iter([True, False])
    calls = 0

    async def lookup() -> bool:
        nonlocal calls
        calls += 1
        return next(answers)

    assert await memo.get("s-1", lookup) is True
    assert await memo.get("s-1", lookup) is True
    assert calls == 1
    now[0] += 0.1
    assert await memo.get("s-1", lookup) is False, "a revoked session is noticed after the ttl"
    assert calls == 2


async def test_ttl_memo_forget_drops_a_remembered_answer() -> None:
    memo: TtlMemo[bool] = TtlMemo(ttl=60)

    async def live() -> bool:
        return True

    async def revoked() -> bool:
        return False

    assert await memo.get("s-1", live) is True
    memo.forget("s-1")
    assert await memo.get("s-1", revoked) is False


async def test_ttl_memo_shares_a_failed_lookup_with_its_waiters_and_remembers_nothing() -> None:
    memo: TtlMemo[bool] = TtlMemo(ttl=60)
    release = asyncio.Event()

    async def failing() -> bool:
        await release.wait()
        raise ConnectionError("users is down")

    first = asyncio.create_task(memo.get("s-1", failing))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(memo.get("s-1", failing))
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]

    async def live() -> bool:
        return True

    assert await memo.get("s-1", live) is True, "a failure is not remembered"


async def test_ttl_memo_a_cancelled_first_caller_does_not_fail_the_others() -> None:
    memo: TtlMemo[bool] = TtlMemo(ttl=60)
    release = asyncio.Event()
    lookups = 0

    async def lookup() -> bool:
        nonlocal lookups
        lookups += 1
        await release.wait()
        return True

    first = asyncio.create_task(memo.get("s-1", lookup))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(memo.get("s-1", lookup))
    await asyncio.sleep(0.01)
    first.cancel()  # e.g. the first caller's client hung up
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.wait_for(second, timeout=10) is True
    assert first.cancelled()
    assert lookups == 1


async def test_ttl_memo_forget_during_a_lookup_keeps_its_answer_from_being_remembered() -> None:
    memo: TtlMemo[bool] = TtlMemo(ttl=60)
    release = asyncio.Event()

    async def read_before_revocation() -> bool:
        await release.wait()
        return True

    async def read_after_revocation() -> bool:
        return False

    in_flight = asyncio.create_task(memo.get("s-1", read_before_revocation))
    await asyncio.sleep(0.01)
    memo.forget("s-1")  # the session is revoked while the lookup runs
    release.set()
    assert await in_flight is True, "its own callers still get an answer"
    assert await memo.get("s-1", read_after_revocation) is False, "but it is not remembered"


def test_a_remembered_token_still_expires_on_time() -> None:
    import time as clock

    # The token's `exp` is in whole seconds (rounded down): a 3 s token lives at least 2 s.
    codec = TokenCodec(keys(signing=USER_KEY), issuer="stockfolio", access_ttl=3)
    token, expires = codec.issue_access(user_id="u", session_id="s", email="u@x.io", roles=["user"])
    assert codec.read_access(token).user_id == "u"
    assert codec.read_access(token).user_id == "u"  # the second read is the remembered one
    clock.sleep(max(0.0, expires.timestamp() - clock.time()) + 0.05)
    with pytest.raises(Unauthenticated) as caught:
        codec.read_access(token)
    assert caught.value.reason == "TOKEN_EXPIRED"


def test_a_remembered_service_token_still_reaches_only_internal_rpcs() -> None:
    codec = TokenVerifier(keys(), issuer="stockfolio", service="portfolio")
    token = facade_token()
    assert codec.read_access(token, allow_service=True).service
    with pytest.raises(Unauthenticated):
        codec.read_access(token)
