"""PostgreSQL stopped and started again under a steady load of reads and idempotent trades
(and a burst of trades in flight at the moment it stops): the services say NOT_SERVING while
it is down, serve again within 5 s of its return, answer no 500 (503s while it is down), and
every trade the API confirmed is there, once.

The scenario runs once; each test below checks one promise of what it recorded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults import infrastructure as infra
from tests.faults.trading import SYMBOL, Trader, burst_of_trades, two_traders_warmed_up
from tests.system_harness import HOST

SERVICES = ("users", "portfolio")
RECOVERY_LIMIT = 5.0
WARM_UP = 40  # trades confirmed before the fault
BURST = 30  # trades sent together just before PostgreSQL stops
AFTER = 3.0  # seconds of load after both reads and trades succeed again
SETTLE_WITHIN = 15.0  # seconds after the return for every retried key to get its answer
NOTICE_WITHIN = 10.0
DOWN_STATUSES = frozenset({0, 503, 504})


@dataclass(frozen=True)
class Restart:
    """What the clients and the services showed around the restart."""

    load: infra.Load
    down_at: float
    back_at: float
    noticed_after: float
    recovered: dict[str, float]
    health_after: dict[str, int]
    traders: list[Trader]
    listed: dict[str, list[dict[str, Any]]]

    @property
    def unsettled(self) -> int:
        return sum(len(t.unsettled) for t in self.traders)


async def health_statuses(admin_ports: dict[str, int]) -> dict[str, int]:
    found: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for name, port in admin_ports.items():
            async with http.get(f"http://{HOST}:{port}/health") as answer:
                found[name] = answer.status
    return found


async def restart_under_load(
    root: Path, cluster: infra.PrivatePostgres, cache: infra.PrivateRedis
) -> Restart:
    replicas = dict.fromkeys(SERVICES, 1)
    async with infra.under_load(root, replicas, cluster, cache) as (system, client, load):
        admin_ports = {name: system.replicas[name][0].admin_port for name in SERVICES}
        async with two_traders_warmed_up(
            client, load, WARM_UP, f"{WARM_UP} trades before the fault", within=30
        ) as traders:
            burst = burst_of_trades(traders, BURST)
            await asyncio.sleep(0.05)
            down_at = time.monotonic()
            await asyncio.to_thread(cluster.stop)
            seen_down: set[str] = set()

            async def noticed() -> bool:
                statuses = await health_statuses(admin_ports)
                seen_down.update(n for n, s in statuses.items() if s == 503)
                return len(seen_down) == len(SERVICES)

            noticed_after = await infra.poll(
                noticed, "NOT_SERVING from every service", NOTICE_WITHIN
            )
            await asyncio.to_thread(cluster.start)
            back_at = time.monotonic()

            async def serving_again() -> bool:
                read = load.first_success_after(back_at, "read")
                trade = load.first_success_after(back_at, "trade")
                return read is not None and trade is not None

            await infra.poll(serving_again, "reads and trades to succeed again", within=30)
            await asyncio.sleep(AFTER)
        # The load has stopped; each worker has finished its last trade, retried until settled
        # (a key whose request died with the database is claimed again once its 10 s lease
        # lapses): stopping the traders before that would leave it unsettled by the test.
        with_burst_settled = asyncio.gather(*burst)
        await asyncio.wait([with_burst_settled], timeout=SETTLE_WITHIN)
        for trader in traders:
            trader.stop.set()
        await with_burst_settled

        recovered = {
            what: load.first_success_after(back_at, what) or float("inf")
            for what in ("read", "trade")
        }
        health_after = await health_statuses(admin_ports)
        listed = {t.portfolio_id: await t.trades_listed() for t in traders}
    return Restart(load, down_at, back_at, noticed_after, recovered, health_after, traders, listed)


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Restart:
    seen = infra.run_on_private_stores(
        tmp_path_factory.mktemp("postgres-restart"), restart_under_load
    )
    statuses = Counter(o.status for o in seen.load.outcomes)
    confirmed = sum(len(t.committed) for t in seen.traders)
    infra.RESULTS.append(
        infra.FaultResult(
            fault=f"PostgreSQL stopped {seen.back_at - seen.down_at:.1f} s, then started",
            load=f"4 readers, 6 idempotent traders, a burst of {BURST} trades at the stop",
            requests=len(seen.load.outcomes),
            # As the other rows count: answers that are final refusals, and keys that never
            # settled. A 409 IN_PROGRESS (a key whose request died with the database, until its
            # release gets through) is answered again when retried.
            failures=sum(n for s, n in statuses.items() if s not in {200, 201, 409, *DOWN_STATUSES})
            + seen.unsettled,
            recovery=max(seen.recovered.values()),
            note=(
                f"NOT_SERVING {seen.noticed_after:.1f} s after the stop; statuses "
                f"{dict(sorted(statuses.items()))}; {confirmed} trades confirmed; "
                f"{seen.unsettled} keys never settled (409 IN_PROGRESS to the end)"
            ),
        )
    )
    return seen


def test_services_report_not_serving_while_postgres_is_down_and_serving_after(
    restart: Restart,
) -> None:
    assert restart.noticed_after < NOTICE_WITHIN
    assert restart.health_after == dict.fromkeys(SERVICES, 200)


def test_no_answer_is_a_500_only_503s_while_it_is_down(restart: Restart) -> None:
    unexpected = Counter(
        o.status for o in restart.load.outcomes if o.status not in {200, 201, 409, *DOWN_STATUSES}
    )
    assert unexpected == Counter()
    # Once it is back and recovered, everything succeeds (409: a key stuck, checked below).
    settled = restart.back_at + max(restart.recovered.values()) + 1.0
    late = [o for o in restart.load.outcomes if o.at - o.elapsed > settled]
    assert Counter(o.status for o in late if o.status not in {200, 201, 409}) == Counter()


def test_reads_and_trades_succeed_again_within_5_s_of_postgres_returning(
    restart: Restart,
) -> None:
    assert max(restart.recovered.values()) < RECOVERY_LIMIT, restart.recovered


def test_every_confirmed_trade_is_listed_exactly_once(restart: Restart) -> None:
    for trader in restart.traders:
        # The portfolio's opening cash is listed too (a deposit): the buys are the trades.
        ids = [t["id"] for t in restart.listed[trader.portfolio_id] if t["symbol"] == SYMBOL]
        confirmed = list(trader.committed.values())
        assert len(set(confirmed)) == len(confirmed), "one trade confirmed under two keys"
        assert sorted(set(ids)) == sorted(ids), "a trade listed twice"
        assert set(confirmed) <= set(ids), f"confirmed trades lost: {set(confirmed) - set(ids)}"
        # A trade under a key never confirmed may have committed, once; nothing beyond that.
        assert len(ids) <= len(confirmed) + len(trader.unsettled), (len(ids), len(confirmed))


# Idempotency claims are 10 s leases (services/runtime/idempotency.py): a key whose request
# died with its replica or its database is claimed again by a retry once the lease runs out.
def test_every_retried_key_gets_its_answer_after_postgres_returns(restart: Restart) -> None:
    assert restart.unsettled == 0
