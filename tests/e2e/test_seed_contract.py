"""What a client written from the seed's types sends and reads, against the started system."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Account, System, request

pytestmark = pytest.mark.e2e


def test_a_portfolio_is_created_and_read_with_the_seeds_field_names(
    system: System, account: Account
) -> None:
    created = request(
        "POST",
        f"{system.facade_url}/api/v1/portfolios",
        body={"name": "Seed client", "currency": "eur"},
        token=account.access_token,
    )
    assert created.status == 201, created.body
    portfolio = created.body["data"]
    assert (portfolio["currency"], portfolio["userId"]) == ("EUR", account.user_id)
    assert "baseCurrency" not in portfolio
    old_name = request(
        "POST",
        f"{system.facade_url}/api/v1/portfolios",
        body={"name": "Old client", "baseCurrency": "USD"},
        token=account.access_token,
    )
    assert old_name.status == 422
    assert old_name.body["error"] == "VALIDATION_ERROR"
    assert [f["field"] for f in old_name.body["details"]["fields"]] == ["baseCurrency"]
