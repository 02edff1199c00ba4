"""A paper portfolio's savings plans in a real browser: a plan started on the page is listed
with its amount and next date, paused and resumed from its row, its runs opened, and deleted;
a tracking portfolio's page has no Plans card."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.screens import api, sign_in
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser


def portfolio(system: System, account: Account, kind: str) -> str:
    body = {"name": f"{kind} plans", "kind": kind, "initialCash": "10000"}
    if kind == "tracking":
        del body["initialCash"]
    return str(api(system, account, "POST", "/api/v1/portfolios", body)["id"])


def test_a_plan_started_paused_resumed_and_deleted_on_the_page(
    page: Page, system: System, account: Account
) -> None:
    paper = portfolio(system, account, "paper")
    sign_in(page, account, at=f"/portfolios/{paper}")
    expect(page.get_by_test_id("no-plans")).to_be_visible()

    # Nothing sent while the form is wrong: the amount is named.
    page.get_by_test_id("plan-amount").fill("12.345")
    page.get_by_test_id("plan-submit").click()
    expect(page.locator("#plan-amount")).to_have_attribute("aria-invalid", "true")

    form = page.get_by_test_id("plan-form")
    form.get_by_label("Symbol").fill("KO")
    expect(form.get_by_label("Symbol")).to_have_value("KO")
    page.get_by_test_id("plan-amount").fill("250")
    page.get_by_test_id("plan-every").select_option("week")
    page.get_by_test_id("plan-whole").check()
    page.get_by_test_id("plan-submit").click()
    expect(page.get_by_test_id("plan-result")).to_contain_text("250.00 of KO")
    row = page.get_by_test_id("plan-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("whole shares")
    plans = api(system, account, "GET", f"/api/v1/portfolios/{paper}/plans")
    (plan,) = plans
    assert (plan["symbol"], plan["amount"], plan["every"], plan["fractional"]) == (
        "KO",
        "250.00",
        "week",
        False,
    )

    row.get_by_test_id("plan-toggle").click()
    expect(row.get_by_test_id("plan-next")).to_have_text("paused")
    assert api(system, account, "GET", f"/api/v1/plans/{plan['id']}")["paused"] is True
    row.get_by_test_id("plan-toggle").click()
    expect(row.get_by_test_id("plan-toggle")).to_have_text("Pause")
    expect(row.get_by_test_id("plan-next")).not_to_have_text("paused")

    row.get_by_test_id("plan-runs-toggle").click()
    expect(page.get_by_test_id("plan-runs")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("plan-delete").click()
    expect(page.get_by_test_id("no-plans")).to_be_visible()
    assert api(system, account, "GET", f"/api/v1/portfolios/{paper}/plans") == []

    tracking = portfolio(system, account, "tracking")
    page.goto(f"/portfolios/{tracking}")
    expect(page.get_by_test_id("portfolio-name")).to_be_visible()
    expect(page.get_by_test_id("plans")).to_have_count(0)
