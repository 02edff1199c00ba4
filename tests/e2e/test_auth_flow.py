"""Signing up, in, around and out through the facade's REST routes, as a browser would."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.system_harness import Account, Response, System, new_credentials, register, request

pytestmark = pytest.mark.e2e

REVOCATION_DEADLINE = 5.0


def assert_envelope(answer: Response, *, success: bool) -> dict[str, Any]:
    body = answer.body
    assert isinstance(body, dict), body
    assert body["success"] is success, body
    assert body["timestamp"], body
    assert body["correlationId"], body
    assert body["service"], body
    if not success:
        assert body["error"], body
        assert body["message"], body
    return body


def assert_token_pair(tokens: dict[str, Any]) -> None:
    assert tokens["accessToken"].count(".") == 2, tokens
    assert tokens["refreshToken"].count(".") == 2, tokens
    assert tokens["accessToken"] != tokens["refreshToken"]
    assert tokens["tokenType"] == "Bearer"
    assert tokens["accessTokenExpiresAt"] < tokens["refreshTokenExpiresAt"]


def login(system: System, account: Account) -> Response:
    return request(
        "POST",
        f"{system.facade_url}/api/v1/auth/login",
        body={"email": account.email, "password": account.password},
    )


def refresh(system: System, refresh_token: str) -> Response:
    return request(
        "POST",
        f"{system.facade_url}/api/v1/auth/refresh",
        body={"refreshToken": refresh_token},
    )


def me(system: System, token: str) -> Response:
    return request("GET", f"{system.facade_url}/api/v1/users/me", token=token)


def portfolios(system: System, token: str) -> Response:
    return request("GET", f"{system.facade_url}/api/v1/portfolios", token=token)


def test_register_answers_201_with_the_new_user_and_a_token_pair(system: System) -> None:
    answer, account = register(system)

    body = assert_envelope(answer, success=True)
    user = body["data"]["user"]
    assert user["email"] == account.email
    assert user["name"] == account.name
    assert user["roles"] == ["user"]
    assert "password" not in user
    assert "passwordHash" not in user
    assert_token_pair(body["data"]["tokens"])


def test_registering_the_same_email_twice_is_a_conflict(system: System, account: Account) -> None:
    answer = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/register",
        body={"email": account.email, "password": account.password, "name": account.name},
    )

    assert answer.status == 409, answer.body
    assert_envelope(answer, success=False)


def test_login_answers_200_and_me_returns_the_same_user(system: System, account: Account) -> None:
    answer = login(system, account)

    assert answer.status == 200, answer.body
    body = assert_envelope(answer, success=True)
    assert body["data"]["user"]["id"] == account.user_id
    assert_token_pair(body["data"]["tokens"])

    profile = me(system, body["data"]["tokens"]["accessToken"])
    assert profile.status == 200, profile.body
    user = assert_envelope(profile, success=True)["data"]
    assert user["id"] == account.user_id
    assert user["email"] == account.email
    assert user["name"] == account.name


def test_login_with_a_wrong_password_is_refused(system: System, account: Account) -> None:
    answer = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/login",
        body={"email": account.email, "password": account.password + "-wrong"},
    )

    assert answer.status == 401, answer.body
    assert_envelope(answer, success=False)


def test_me_without_a_token_is_refused(system: System) -> None:
    answer = request("GET", f"{system.facade_url}/api/v1/users/me")

    assert answer.status == 401, answer.body
    assert_envelope(answer, success=False)


def test_validate_reports_the_token_owner(system: System, account: Account) -> None:
    answer = request("GET", f"{system.facade_url}/api/v1/auth/validate", token=account.access_token)

    assert answer.status == 200, answer.body
    data = assert_envelope(answer, success=True)["data"]
    assert data["valid"] is True
    assert data["userId"] == account.user_id
    assert data["email"] == account.email


def test_refresh_rotates_the_pair_and_reusing_a_spent_refresh_token_revokes_the_session(
    system: System, account: Account
) -> None:
    signed_in = login(system, account)
    assert signed_in.status == 200, signed_in.body
    first = signed_in.body["data"]["tokens"]

    rotated = refresh(system, first["refreshToken"])
    assert rotated.status == 200, rotated.body
    second = assert_envelope(rotated, success=True)["data"]["tokens"]
    assert_token_pair(second)
    assert second["accessToken"] != first["accessToken"]
    assert second["refreshToken"] != first["refreshToken"]
    assert me(system, second["accessToken"]).status == 200

    reused = refresh(system, first["refreshToken"])
    assert reused.status == 401, reused.body
    assert_envelope(reused, success=False)
    # Reuse means theft: the whole session goes, including the pair issued by the rotation.
    after_theft = refresh(system, second["refreshToken"])
    assert after_theft.status == 401, after_theft.body


def test_logout_revokes_the_access_token_in_users_and_in_another_service(
    system: System, account: Account
) -> None:
    token = account.access_token
    # Before logout the portfolio service accepts the token (it may not implement the route yet).
    assert portfolios(system, token).status in {200, 501}

    out = request("POST", f"{system.facade_url}/api/v1/auth/logout", body={}, token=token)
    assert out.status == 200, out.body
    assert_envelope(out, success=True)

    refused = me(system, token)
    assert refused.status == 401, refused.body
    assert_envelope(refused, success=False)

    # Other services learn of the revocation through their short-lived session cache.
    deadline = time.monotonic() + REVOCATION_DEADLINE
    elsewhere = portfolios(system, token)
    while elsewhere.status != 401 and time.monotonic() < deadline:
        time.sleep(0.25)
        elsewhere = portfolios(system, token)
    assert elsewhere.status == 401, (
        f"portfolio still accepts a revoked token after {REVOCATION_DEADLINE} s: {elsewhere.body}"
    )
    assert_envelope(elsewhere, success=False)


def test_a_password_shorter_than_the_rules_allow_is_rejected_with_field_errors(
    system: System,
) -> None:
    email, _, name = new_credentials()
    answer = request(
        "POST",
        f"{system.facade_url}/api/v1/auth/register",
        body={"email": email, "password": "x", "name": name},
    )

    assert answer.status == 422, answer.body
    body = assert_envelope(answer, success=False)
    assert body["details"].get("fields"), body


def test_a_terminal_create_after_logout_is_401_not_503(system: System) -> None:
    """Found by the fuzzer: the terminal service still took the session as live (its check
    is cached for a moment) while the workspace, asked for the project's folder, judged it
    ended; that answer was turned into a 503 "retry shortly". It is the caller's 401."""
    _, account = register(system)
    token = account.access_token
    terminals = f"{system.facade_url}/api/v1/terminal/terminals"
    listed = request("GET", terminals, token=token)  # the terminal service caches "live"
    assert listed.status == 200, listed.body
    out = request("POST", f"{system.facade_url}/api/v1/auth/logout", body={}, token=token)
    assert out.status == 200, out.body
    created = request("POST", f"{terminals}/create", body={}, token=token)
    body = assert_envelope(created, success=False)
    assert created.status == 401, body
    assert body["error"] == "SESSION_REVOKED", body
