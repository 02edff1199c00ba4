"""Watchlists and price alerts through the real portfolio server, on SQLite and PostgreSQL:
CRUD, ownership (another user's list or alert is 404), validation naming the field, limits.

Prices are the simulated market's opening prices, held still (AAPL 189.50, KO 62.40, MSFT
415.30)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.alerts import MAX_ACTIVE_ALERTS
from services.portfolio.watchlists import MAX_WATCHLISTS, Watchlists
from tests.integration.portfolio_harness import PortfolioService
from tests.rpc_errors import expect_error, reason, violations

# --- watchlists --------------------------------------------------------------------------------


async def test_a_user_creates_reads_renames_reorders_and_deletes_a_watchlist(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    created = (
        await s.stub.CreateWatchlist(
            pb.CreateWatchlistRequest(name=" Tech ", symbols=["msft", " aapl"]), metadata=who
        )
    ).watchlist
    assert (created.name, list(created.symbols)) == ("Tech", ["MSFT", "AAPL"])
    assert [(q.symbol, q.price, q.change) for q in created.quotes] == [
        ("MSFT", "415.30", "0.00"),
        ("AAPL", "189.50", "0.00"),
    ]

    got = (await s.stub.GetWatchlist(pb.GetWatchlistRequest(id=created.id), metadata=who)).watchlist
    assert list(got.symbols) == ["MSFT", "AAPL"]

    updated = (
        await s.stub.UpdateWatchlist(
            pb.UpdateWatchlistRequest(id=created.id, name="Big", symbols=["KO", "AAPL", "MSFT"]),
            metadata=who,
        )
    ).watchlist
    assert (updated.name, list(updated.symbols)) == ("Big", ["KO", "AAPL", "MSFT"])
    assert [q.symbol for q in updated.quotes] == ["KO", "AAPL", "MSFT"]

    listed = await s.stub.ListWatchlists(pb.ListWatchlistsRequest(), metadata=who)
    assert [(w.id, w.name) for w in listed.watchlists] == [(created.id, "Big")]
    assert listed.pagination.total == 1

    await s.stub.DeleteWatchlist(pb.DeleteWatchlistRequest(id=created.id), metadata=who)
    error = await expect_error(
        s.stub.GetWatchlist(pb.GetWatchlistRequest(id=created.id), metadata=who),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(error) == "WATCHLIST_NOT_FOUND"


async def test_another_users_watchlist_is_not_found_whatever_the_call(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    owner, other = await s.user(), await s.user()
    mine = (
        await s.stub.CreateWatchlist(
            pb.CreateWatchlistRequest(name="Mine", symbols=["KO"]), metadata=owner
        )
    ).watchlist
    for call in (
        s.stub.GetWatchlist(pb.GetWatchlistRequest(id=mine.id), metadata=other),
        s.stub.UpdateWatchlist(
            pb.UpdateWatchlistRequest(id=mine.id, name="Theirs", symbols=[]), metadata=other
        ),
        s.stub.DeleteWatchlist(pb.DeleteWatchlistRequest(id=mine.id), metadata=other),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND)
    listed = await s.stub.ListWatchlists(pb.ListWatchlistsRequest(), metadata=other)
    assert list(listed.watchlists) == []
    still = await s.stub.GetWatchlist(pb.GetWatchlistRequest(id=mine.id), metadata=owner)
    assert still.watchlist.name == "Mine"


async def test_an_unknown_symbol_is_404_naming_it_and_a_repeat_is_422(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    error = await expect_error(
        s.stub.CreateWatchlist(
            pb.CreateWatchlistRequest(name="X", symbols=["AAPL", "NOPE"]), metadata=who
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "NOPE" in (error.details() or "")
    error = await expect_error(
        s.stub.CreateWatchlist(
            pb.CreateWatchlistRequest(name="X", symbols=["AAPL", "aapl"]), metadata=who
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(error) == [("symbols", "lists AAPL twice")]
    listed = await s.stub.ListWatchlists(pb.ListWatchlistsRequest(), metadata=who)
    assert listed.pagination.total == 0


async def test_a_user_keeps_at_most_fifty_watchlists(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who = await s.user()
    for n in range(MAX_WATCHLISTS):
        await s.stub.CreateWatchlist(pb.CreateWatchlistRequest(name=f"L{n}"), metadata=who)
    error = await expect_error(
        s.stub.CreateWatchlist(pb.CreateWatchlistRequest(name="one more"), metadata=who),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "TOO_MANY_WATCHLISTS"


# --- alerts ------------------------------------------------------------------------------------


async def test_a_user_creates_lists_pauses_resumes_and_deletes_alerts(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    above = (
        await s.stub.CreateAlert(
            pb.CreateAlertRequest(
                symbol="aapl", condition=pb.ALERT_CONDITION_ABOVE, price="250", note=" high "
            ),
            metadata=who,
        )
    ).alert
    assert (above.symbol, above.price, above.percent, above.active, above.note) == (
        "AAPL",
        "250.00",
        "",
        True,
        "high",
    )
    assert (above.repeat, above.cooldown_seconds, above.window_seconds) == (False, 0, 0)
    moved = (
        await s.stub.CreateAlert(
            pb.CreateAlertRequest(
                symbol="KO",
                condition=pb.ALERT_CONDITION_PERCENT_CHANGE,
                percent="-2.50",
                window_seconds=3600,
                repeat=True,
            ),
            metadata=who,
        )
    ).alert
    assert (moved.percent, moved.price, moved.window_seconds) == ("-2.5", "", 3600)
    assert (moved.repeat, moved.cooldown_seconds) == (True, 300)  # the default cool-down

    listed = await s.stub.ListAlerts(pb.ListAlertsRequest(), metadata=who)
    assert [a.id for a in listed.alerts] == [above.id, moved.id]
    only_ko = await s.stub.ListAlerts(pb.ListAlertsRequest(symbol="ko"), metadata=who)
    assert [a.id for a in only_ko.alerts] == [moved.id]

    paused = await s.stub.UpdateAlert(pb.UpdateAlertRequest(id=above.id), metadata=who)
    assert paused.alert.active is False
    resumed = await s.stub.UpdateAlert(
        pb.UpdateAlertRequest(id=above.id, active=True), metadata=who
    )
    assert resumed.alert.active is True

    await s.stub.DeleteAlert(pb.DeleteAlertRequest(id=above.id), metadata=who)
    listed = await s.stub.ListAlerts(pb.ListAlertsRequest(), metadata=who)
    assert [a.id for a in listed.alerts] == [moved.id]
    fired = await s.stub.ListFiredAlerts(pb.ListFiredAlertsRequest(), metadata=who)
    assert (list(fired.fired), fired.unread) == ([], 0)


async def test_another_users_alert_is_not_found(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    owner, other = await s.user(), await s.user()
    alert = (
        await s.stub.CreateAlert(
            pb.CreateAlertRequest(symbol="KO", condition=pb.ALERT_CONDITION_BELOW, price="10"),
            metadata=owner,
        )
    ).alert
    for call in (
        s.stub.UpdateAlert(pb.UpdateAlertRequest(id=alert.id, active=False), metadata=other),
        s.stub.DeleteAlert(pb.DeleteAlertRequest(id=alert.id), metadata=other),
    ):
        error = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert reason(error) == "ALERT_NOT_FOUND"
    assert list((await s.stub.ListAlerts(pb.ListAlertsRequest(), metadata=other)).alerts) == []
    marked = await s.stub.MarkFiredAlertsRead(pb.MarkFiredAlertsReadRequest(), metadata=other)
    assert marked.marked == 0
    mine = await s.stub.ListAlerts(pb.ListAlertsRequest(), metadata=owner)
    assert [(a.id, a.active) for a in mine.alerts] == [(alert.id, True)]


async def test_bad_alerts_are_refused_naming_the_field(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who = await s.user()
    cases = [
        (pb.CreateAlertRequest(symbol="KO", condition=pb.ALERT_CONDITION_ABOVE), "price"),
        (
            pb.CreateAlertRequest(symbol="KO", condition=pb.ALERT_CONDITION_PERCENT_CHANGE),
            "percent",
        ),
        (
            pb.CreateAlertRequest(
                symbol="KO", condition=pb.ALERT_CONDITION_PERCENT_CHANGE, percent="5"
            ),
            "windowSeconds",
        ),
        (
            pb.CreateAlertRequest(
                symbol="KO",
                condition=pb.ALERT_CONDITION_PERCENT_CHANGE,
                percent="0",
                window_seconds=60,
            ),
            "percent",
        ),
    ]
    for request, field in cases:
        error = await expect_error(
            s.stub.CreateAlert(request, metadata=who), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert [f for f, _ in violations(error)] == [field], (request, violations(error))
    error = await expect_error(
        s.stub.CreateAlert(
            pb.CreateAlertRequest(symbol="NOPE", condition=pb.ALERT_CONDITION_ABOVE, price="1"),
            metadata=who,
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "NOPE" in (error.details() or "")


async def test_a_user_keeps_at_most_two_hundred_active_alerts(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    first = None
    for n in range(MAX_ACTIVE_ALERTS):
        created = await s.stub.CreateAlert(
            pb.CreateAlertRequest(
                symbol="KO", condition=pb.ALERT_CONDITION_ABOVE, price=str(1000 + n)
            ),
            metadata=who,
        )
        first = first or created.alert
    assert first is not None
    over = pb.CreateAlertRequest(symbol="KO", condition=pb.ALERT_CONDITION_ABOVE, price="9999")
    error = await expect_error(
        s.stub.CreateAlert(over, metadata=who), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "TOO_MANY_ALERTS"
    # A paused alert makes room; resuming it while full is refused.
    await s.stub.UpdateAlert(pb.UpdateAlertRequest(id=first.id, active=False), metadata=who)
    await s.stub.CreateAlert(over, metadata=who)
    await expect_error(
        s.stub.UpdateAlert(pb.UpdateAlertRequest(id=first.id, active=True), metadata=who),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


async def test_a_watchlist_or_alert_sent_again_with_its_key_is_made_once(
    portfolio_service: PortfolioService,
) -> None:
    """The README promises every creating POST takes an Idempotency-Key; a watchlist and an
    alert sent twice with one made two (found by a README walk-through)."""
    s = portfolio_service
    who = await s.user()
    watchlist = pb.CreateWatchlistRequest(name="Tech", symbols=["MSFT", "AAPL"])
    alert = pb.CreateAlertRequest(symbol="KO", condition=pb.ALERT_CONDITION_ABOVE, price="1000")
    keyed = (*who, ("idempotency-key", "once-1"))
    first, again = [(await s.stub.CreateWatchlist(watchlist, metadata=keyed)) for _ in range(2)]
    assert first == again
    other = (*who, ("idempotency-key", "once-2"))
    made, repeated = [(await s.stub.CreateAlert(alert, metadata=other)) for _ in range(2)]
    assert made == repeated
    lists = await s.stub.ListWatchlists(pb.ListWatchlistsRequest(), metadata=who)
    alerts = await s.stub.ListAlerts(pb.ListAlertsRequest(), metadata=who)
    assert [w.id for w in lists.watchlists] == [first.watchlist.id]
    assert [a.id for a in alerts.alerts] == [made.alert.id]
    # The same key with another body is refused, as for trades.
    error = await expect_error(
        s.stub.CreateWatchlist(pb.CreateWatchlistRequest(name="Other"), metadata=keyed),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason(error) == "IDEMPOTENCY_KEY_REUSED"


async def test_create_watchlist_retried_with_its_key_after_a_hang_up_creates_one(
    portfolio_service: PortfolioService, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = portfolio_service
    who = await s.user()
    slow = {"on": True}
    quoted = Watchlists._quoted

    async def stalled(self: Watchlists, *args: Any, **kwargs: Any) -> Any:
        if slow["on"]:
            await asyncio.sleep(1.0)  # a slow market answer, after the commit
        return await quoted(self, *args, **kwargs)

    monkeypatch.setattr(Watchlists, "_quoted", stalled)
    request = pb.CreateWatchlistRequest(name="Tech", symbols=["AAPL", "KO"])
    keyed = (*who, ("idempotency-key", "list-once"))
    with pytest.raises(grpc.aio.AioRpcError) as hung:
        await s.stub.CreateWatchlist(request, metadata=keyed, timeout=0.5)
    assert hung.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(1.5)
    slow["on"] = False
    await s.stub.CreateWatchlist(request, metadata=keyed)
    listed = await s.stub.ListWatchlists(pb.ListWatchlistsRequest(), metadata=who)
    assert len(listed.watchlists) == 1, [w.id for w in listed.watchlists]
