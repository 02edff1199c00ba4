"""Tokens (issue, read, reject) and the short memory of session checks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from services.runtime.auth import TokenCodec, TtlMemo, bearer_token
from services.runtime.errors import Unauthenticated

SECRET = "auth-test-secret-" + "z" * 60  # 64+ bytes: long enough for HS512 too
OTHER_SECRET = "another-secret-" + "q" * 40


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(SECRET, issuer="stockfolio", access_ttl=900)


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a well-formed access token, with some replaced."""
    now = datetime.now(UTC)
    found: dict[str, Any] = {
        "iss": "stockfolio",
        "sub": "u-1",
        "sid": "s-1",
        "email": "ada@example.com",
        "roles": ["user"],
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def reason_of(codec: TokenCodec, token: str) -> str:
    with pytest.raises(Unauthenticated) as raised:
        codec.read_access(token)
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


def test_a_refresh_token_round_trips_its_claims(codec: TokenCodec) -> None:
    token, expires = codec.issue_refresh(user_id="u-1", session_id="s-1", token_id="r-7", ttl=3600)
    read = codec.read_refresh(token)
    assert (read.user_id, read.session_id, read.token_id) == ("u-1", "s-1", "r-7")
    assert read.expires_at == expires.replace(microsecond=0)


def test_an_expired_token_is_rejected_as_expired(codec: TokenCodec) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    token = jwt.encode(claims(iat=past, exp=past + timedelta(minutes=5)), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated) as raised:
        codec.read_access(token)
    assert raised.value.reason == "TOKEN_EXPIRED"
    assert raised.value.message == "access token expired"


def test_a_token_signed_with_another_key_is_invalid(codec: TokenCodec) -> None:
    stranger = TokenCodec(OTHER_SECRET, issuer="stockfolio", access_ttl=900)
    token, _ = stranger.issue_access(user_id="u-1", session_id="s-1", email="", roles=["admin"])
    assert reason_of(codec, token) == "TOKEN_INVALID"


def test_a_refresh_token_presented_as_an_access_token_is_rejected(codec: TokenCodec) -> None:
    refresh, _ = codec.issue_refresh(user_id="u-1", session_id="s-1", token_id="r-1", ttl=3600)
    assert reason_of(codec, refresh) == "TOKEN_INVALID"
    access, _ = codec.issue_access(user_id="u-1", session_id="s-1", email="", roles=[])
    with pytest.raises(Unauthenticated) as raised:
        codec.read_refresh(access)
    assert raised.value.reason == "TOKEN_INVALID"


def test_an_unsigned_alg_none_token_is_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(roles=["admin"]), None, algorithm="none")
    assert token.endswith("."), "an alg=none token has an empty signature"
    assert reason_of(codec, token) == "TOKEN_INVALID"


def test_a_token_signed_with_the_right_key_but_another_algorithm_is_rejected(
    codec: TokenCodec,
) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    assert reason_of(codec, token) == "TOKEN_INVALID"


def test_a_token_from_another_issuer_is_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(iss="someone-else"), SECRET, algorithm="HS256")
    assert reason_of(codec, token) == "TOKEN_INVALID"


@pytest.mark.parametrize("missing", ["sid", "sub", "exp", "typ", "jti"])
def test_a_token_missing_a_required_claim_is_rejected(codec: TokenCodec, missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256")
    assert reason_of(codec, token) == "TOKEN_INVALID"


def test_a_tampered_token_is_rejected(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(user_id="u-1", session_id="s-1", email="", roles=["user"])
    header, _, signature = token.split(".")
    forged_payload = jwt.encode(claims(roles=["admin"]), SECRET, algorithm="HS256").split(".")[1]
    assert reason_of(codec, f"{header}.{forged_payload}.{signature}") == "TOKEN_INVALID"
    assert reason_of(codec, "not-a-jwt") == "TOKEN_INVALID"


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
    memo = TtlMemo(ttl=60)
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


async def test_ttl_memo_answers_expire_after_the_ttl() -> None:
    memo = TtlMemo(ttl=0.05)
    answers = iter([True, False])
    calls = 0

    async def lookup() -> bool:
        nonlocal calls
        calls += 1
        return next(answers)

    assert await memo.get("s-1", lookup) is True
    assert await memo.get("s-1", lookup) is True
    assert calls == 1
    await asyncio.sleep(0.1)
    assert await memo.get("s-1", lookup) is False, "a revoked session is noticed after the ttl"
    assert calls == 2


async def test_ttl_memo_forget_drops_a_remembered_answer() -> None:
    memo = TtlMemo(ttl=60)

    async def live() -> bool:
        return True

    async def revoked() -> bool:
        return False

    assert await memo.get("s-1", live) is True
    memo.forget("s-1")
    assert await memo.get("s-1", revoked) is False


async def test_ttl_memo_shares_a_failed_lookup_with_its_waiters_and_remembers_nothing() -> None:
    memo = TtlMemo(ttl=60)
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
    memo = TtlMemo(ttl=60)
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
    memo = TtlMemo(ttl=60)
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

    codec = TokenCodec("k" * 48, issuer="stockfolio", access_ttl=1)
    token, _ = codec.issue_access(user_id="u", session_id="s", email="u@x.io", roles=["user"])
    assert codec.read_access(token).user_id == "u"
    assert codec.read_access(token).user_id == "u"  # the second read is the remembered one
    clock.sleep(1.1)
    with pytest.raises(Unauthenticated) as caught:
        codec.read_access(token)
    assert caught.value.reason == "TOKEN_EXPIRED"


def test_a_remembered_service_token_still_reaches_only_internal_rpcs() -> None:
    codec = TokenCodec("k" * 48, issuer="stockfolio", access_ttl=60)
    token, _ = codec.issue_service("facade")
    assert codec.read_access(token, allow_service=True).service
    with pytest.raises(Unauthenticated):
        codec.read_access(token)
