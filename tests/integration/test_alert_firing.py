"""Alerts fired by the real portfolio server on a moving simulated market (a step every 50 ms),
on SQLite and PostgreSQL: a one-off alert fires once, is stored unread and deactivated, and is
published as an `alert` event; with two replicas on one Redis each crossing fires once, its
event reaching both replicas' streams. (Crossing rules tick by tick: tests/unit/
test_alert_index.py.)"""

from __future__ import annotations

from decimal import Decimal

from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    StartPortfolio,
    collecting,
)
from tests.waiting import until

MOVING = {"MOCK_UPDATE_INTERVAL": "50"}


async def around_the_price(s: PortfolioService, who: Metadata, symbol: str) -> list[pb.Alert]:
    """One-off alerts a cent above and a cent below the current price: the walk soon crosses
    one of them."""
    quote = await s.stub.GetQuote(pb.GetQuoteRequest(symbol=symbol), metadata=who)
    price = Decimal(quote.quote.price)
    made = []
    for condition, threshold in (
        (pb.ALERT_CONDITION_ABOVE, price + Decimal("0.01")),
        (pb.ALERT_CONDITION_BELOW, price - Decimal("0.01")),
    ):
        request = pb.CreateAlertRequest(symbol=symbol, condition=condition, price=str(threshold))
        made.append((await s.stub.CreateAlert(request, metadata=who)).alert)
    return made


async def fired_of(s: PortfolioService, who: Metadata) -> list[pb.FiredAlert]:
    reply = await s.stub.ListFiredAlerts(pb.ListFiredAlertsRequest(limit=100), metadata=who)
    return list(reply.fired)


async def test_a_crossed_one_off_alert_fires_once_unread_and_is_published(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(**MOVING) as s:
        who, user_id = await s.account()
        async with collecting(s) as events:
            made = await around_the_price(s, who, "AAPL")
            await until(lambda: any(e.HasField("alert") for e in events), "an alert event")
            event = next(e for e in events if e.HasField("alert"))
            # The walk may cross the other alert too, at any moment: deleted, it fires no more,
            # and what the counts below compare against holds still.
            for other in made:
                if other.id != event.alert.alert_id:
                    await s.stub.DeleteAlert(pb.DeleteAlertRequest(id=other.id), metadata=who)
            fired = await fired_of(s, who)
        assert event.user_id == user_id
        first = fired[-1]  # the oldest
        assert event.alert == first
        alert = next(a for a in made if a.id == first.alert_id)
        assert (first.symbol, first.condition, first.threshold) == (
            "AAPL",
            alert.condition,
            alert.price,
        )
        crossed = Decimal(first.price)
        if alert.condition == pb.ALERT_CONDITION_ABOVE:
            assert crossed >= Decimal(alert.price)
            assert first.message == f"AAPL rose above {alert.price} ({first.price})"
        else:
            assert crossed <= Decimal(alert.price)
            assert first.message == f"AAPL fell below {alert.price} ({first.price})"
        assert first.read is False

        listed = await s.stub.ListAlerts(pb.ListAlertsRequest(), metadata=who)
        states = {a.id: (a.active, a.last_fired_at.seconds > 0) for a in listed.alerts}
        assert states[first.alert_id] == (False, True)

        unread = await s.stub.ListFiredAlerts(pb.ListFiredAlertsRequest(unread=True), metadata=who)
        assert unread.unread == len(fired)
        marked = await s.stub.MarkFiredAlertsRead(
            pb.MarkFiredAlertsReadRequest(ids=[first.id]), metadata=who
        )
        assert marked.marked == 1
        after = await s.stub.ListFiredAlerts(pb.ListFiredAlertsRequest(), metadata=who)
        assert after.unread == len(fired) - 1
        assert [f.read for f in after.fired if f.id == first.id] == [True]
        # A one-off alert fired once, however long the market keeps moving.
        assert sorted(f.alert_id for f in await fired_of(s, who)) == sorted(
            f.alert_id for f in fired
        )
        assert len({f.alert_id for f in fired}) == len(fired)


async def test_two_replicas_on_one_redis_fire_each_crossing_once(
    start_portfolio: StartPortfolio, redis_url: str
) -> None:
    shared = {"REDIS_URL": redis_url, **MOVING}
    async with start_portfolio(**shared) as first, start_portfolio(**shared) as second:
        who, _ = await second.account()
        async with collecting(first) as on_first, collecting(second) as on_second:
            made = [
                *await around_the_price(second, who, "AAPL"),
                *await around_the_price(first, who, "KO"),
            ]
            # A repeating alert that holds at once (fresh: it fires at its first tick), with a
            # cool-down longer than the test: two evaluators would fire it twice.
            always = pb.CreateAlertRequest(
                symbol="MSFT",
                condition=pb.ALERT_CONDITION_ABOVE,
                price="0.01",
                repeat=True,
                cooldown_seconds=3600,
            )
            made.append((await second.stub.CreateAlert(always, metadata=who)).alert)

            def alerts(events: list[pb.StreamPortfolioEventsResponse]) -> list[str]:
                return [e.alert.alert_id for e in events if e.HasField("alert")]

            # The always-true alert among them: others may fire first, on a loaded machine
            # well before it.
            await until(
                lambda: all(
                    len(set(alerts(events))) >= 3 and made[-1].id in alerts(events)
                    for events in (on_first, on_second)
                ),
                "alert events on both replicas",
            )
            ids = [f.alert_id for f in await fired_of(first, who)]
            await until(
                lambda: set(alerts(on_first)) >= set(ids) <= set(alerts(on_second)),
                "every firing on both replicas' streams",
            )
        assert len(ids) == len(set(ids)) >= 3  # each alert fired once
        assert made[-1].id in ids
        # Each replica's stream carried each firing once (the leader's own event came back
        # through Redis and was recognised).
        for events in (on_first, on_second):
            assert [alerts(events).count(i) for i in ids] == [1] * len(ids)
