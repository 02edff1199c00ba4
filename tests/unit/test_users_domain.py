"""Account rules of the users service: pure functions, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.errors import InvalidArgument, PermissionDenied
from services.runtime.pagination import page_of
from services.users.domain import (
    ProfileChanges,
    check_may_change,
    check_may_view,
    check_password,
    check_roles,
    clean_name,
    initial_roles,
    must_give_current_password,
    normalize_email,
    requested_email,
)


def test_emails_are_normalized_to_lowercase_without_surrounding_space() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


@pytest.mark.parametrize("raw", ["", "plain", "a@b", "a b@c.io", "@x.io", "a@.io", "a@b.c."])
def test_malformed_emails_are_rejected_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalize_email(raw)
    assert [f for f, _ in caught.value.fields] == ["email"]


@given(st.emails())
def test_every_valid_email_normalizes_idempotently(email: str) -> None:
    once = normalize_email(email)
    assert normalize_email(once) == once
    assert once == once.lower().strip()


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short1", "at least 8 characters"),
        ("lettersonly", "a letter and a digit"),
        ("1234567890", "a letter and a digit"),
        ("é" * 36 + "1", "at most 72 bytes"),
        ("ada@example.com1", None),
    ],
)
def test_password_policy_names_each_problem(password: str, problem: str | None) -> None:
    if problem is None:
        check_password(password, email="ada@example.com")
        return
    with pytest.raises(InvalidArgument) as caught:
        check_password(password, email="ada@example.com")
    assert {f for f, _ in caught.value.fields} == {"password"}
    assert any(problem in d for _, d in caught.value.fields)


def test_password_may_not_be_the_email() -> None:
    with pytest.raises(InvalidArgument, match="must not be the email"):
        check_password("ada1@example.com", email="ada1@example.com")


def test_names_collapse_whitespace_and_default_to_the_email_local_part() -> None:
    assert clean_name("  Ada   Lovelace ", email="ada@example.com") == "Ada Lovelace"
    assert clean_name("", email="ada@example.com") == "ada"
    with pytest.raises(InvalidArgument):
        clean_name("x" * 101, email="ada@example.com")


def test_roles_always_include_user_and_reject_unknown_ones() -> None:
    assert check_roles(["admin"]) == ["user", "admin"]
    assert check_roles(["user"]) == ["user"]
    with pytest.raises(InvalidArgument, match="superuser"):
        check_roles(["superuser"])


def test_first_user_is_admin_unless_an_admin_email_is_configured() -> None:
    def roles(email: str, *, first_user: bool, admin_email: str | None) -> list[str]:
        return initial_roles(
            email, first_user=first_user, admin_email=admin_email, production=False
        )

    assert roles("a@x.io", first_user=True, admin_email=None) == ["user", "admin"]
    assert roles("a@x.io", first_user=False, admin_email=None) == ["user"]
    assert roles("a@x.io", first_user=True, admin_email="boss@x.io") == ["user"]
    assert roles("boss@x.io", first_user=False, admin_email="boss@x.io") == ["user", "admin"]


def test_in_production_registration_never_makes_an_admin() -> None:
    for email in ("a@x.io", "boss@x.io"):
        roles = initial_roles(email, first_user=True, admin_email="boss@x.io", production=True)
        assert roles == ["user"]
    assert initial_roles("a@x.io", first_user=True, admin_email=None, production=True) == ["user"]


def test_users_touch_only_their_own_account_and_only_admins_change_roles() -> None:
    check_may_view("u1", False, "u1")
    check_may_view("admin", True, "u1")
    with pytest.raises(PermissionDenied):
        check_may_view("u1", False, "u2")
    with pytest.raises(PermissionDenied):
        check_may_change("u1", False, "u2", ProfileChanges(name="x"))
    with pytest.raises(PermissionDenied, match="roles"):
        check_may_change("u1", False, "u1", ProfileChanges(roles=["admin"]))
    check_may_change("admin", True, "u1", ProfileChanges(roles=["admin"]))


def test_ones_own_account_needs_the_current_password_and_an_admins_change_of_another_not() -> None:
    assert must_give_current_password("u1", "u1")
    assert must_give_current_password("admin", "admin")
    assert not must_give_current_password("admin", "u1")


def test_an_email_sent_back_as_the_account_has_it_asks_for_no_change() -> None:
    assert requested_email(None, "ada@example.com") is None
    assert requested_email("  ADA@Example.com ", "ada@example.com") is None
    assert requested_email("Ada2@Example.com", "ada@example.com") == "ada2@example.com"
    with pytest.raises(InvalidArgument) as caught:
        requested_email("not an email", "ada@example.com")
    assert [f for f, _ in caught.value.fields] == ["email"]


def test_pagination_defaults_and_limits() -> None:
    page = page_of(0, 0)
    assert (page.number, page.limit, page.offset) == (1, 20, 0)
    assert page_of(3, 10).offset == 20
    described = page_of(2, 10).describe(21)
    assert (described.total, described.total_pages) == (21, 3)
    with pytest.raises(InvalidArgument) as caught:
        page_of(-1, 101)
    assert {f for f, _ in caught.value.fields} == {"page", "limit"}
