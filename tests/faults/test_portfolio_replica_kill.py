"""kill -9 one of two portfolio replicas under a steady load of portfolio reads and idempotent
trades (POST /api/v1/trades with an Idempotency-Key, retried with the same key, as the traders
of tests/faults/trading.py do), with a burst of trades in flight at the kill: no read fails,
every key's trade is confirmed, and the portfolio lists each key's trade exactly once.

Trades name their price, so nothing here depends on the market, nor on which replica leads it
(the killed one may or may not: the market's own failover is test_market_leader_kill.py's).

The scenario runs once; each test below checks one promise of what it recorded."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults import infrastructure as infra
from tests.faults.trading import RETRIED, SYMBOL, Trader, burst_of_trades, two_traders_warmed_up
from tests.system_harness import HOST

PRICE = "187.42"
WARM_UP = 40  # trades confirmed before the kill
BURST = 30  # trades sent together just before the kill
AFTER = 5.0  # seconds of load after the kill
# Idempotency claims are 10 s leases (services/runtime/idempotency.py): a key the killed
# replica had claimed is taken again by a retry once its lease runs out.
SETTLE_WITHIN = 15.0


@dataclass(frozen=True)
class PortfolioKill:
    load: infra.Load
    killed_at: float
    exit_code: int | None
    trades_on_doomed: int  # trades the killed replica had handled when it was killed
    traders: list[Trader]
    listed: dict[str, list[dict[str, Any]]]  # portfolio id -> its trades

    @property
    def unsettled(self) -> int:
        return sum(len(t.unsettled) for t in self.traders)

    def refused(self) -> Counter[int]:
        """Trade answers neither retried nor a success: a request that failed for good."""
        return Counter(
            o.status
            for o in self.load.outcomes
            if o.what == "trade" and o.status != 201 and o.status not in RETRIED
        )

    def trades_of(self, trader: Trader) -> list[dict[str, Any]]:
        return [t for t in self.listed[trader.portfolio_id] if t["symbol"] == SYMBOL]


async def trades_handled(admin_port: int) -> int:
    """CreateTrade calls a replica has ended, whatever their code, from its /metrics."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{HOST}:{admin_port}/metrics") as answer,
    ):
        text = await answer.text()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("stockfolio_grpc_server_handled_total{")
            and 'method="CreateTrade"' in line
        )
    )


async def kill_under_load(
    root: Path, cluster: infra.PrivatePostgres, cache: infra.PrivateRedis
) -> PortfolioKill:
    replicas = {"users": 1, "portfolio": 2}
    async with infra.under_load(root, replicas, cluster, cache) as (system, client, load):
        async with two_traders_warmed_up(
            client, load, WARM_UP, f"{WARM_UP} trades before the kill", within=60, price=PRICE
        ) as traders:
            doomed = system.replicas["portfolio"][0]
            burst = burst_of_trades(traders, BURST)
            await asyncio.sleep(0.05)  # in flight: somewhere between their claim and answer
            trades_on_doomed = await trades_handled(doomed.admin_port)
            killed_at = time.monotonic()
            doomed.signal(signal.SIGKILL)
            await asyncio.sleep(AFTER)
        # The load has stopped; each worker has finished its last trade, retried until settled.
        await asyncio.wait(burst, timeout=SETTLE_WITHIN)
        for trader in traders:
            trader.stop.set()
        await asyncio.gather(*burst)
        exit_code = doomed.popen.poll() if doomed.popen else None
        listed = {t.portfolio_id: await t.trades_listed() for t in traders}
    return PortfolioKill(load, killed_at, exit_code, trades_on_doomed, traders, listed)


@pytest.fixture(scope="module")
def kill(tmp_path_factory: pytest.TempPathFactory) -> PortfolioKill:
    seen = infra.run_on_private_stores(tmp_path_factory.mktemp("portfolio-kill"), kill_under_load)
    statuses = Counter(o.status for o in seen.load.outcomes)
    after = [o for o in seen.load.outcomes if o.at > seen.killed_at]
    # 409: a key the killed replica claimed, until its lease ends; 0/5xx: the kill itself.
    failed = [o.at - seen.killed_at for o in after if o.status not in {200, 201, 409}]
    confirmed = sum(len(t.committed) for t in seen.traders)
    listed = sum(len(seen.trades_of(t)) for t in seen.traders)
    failed_reads = sum(1 for o in seen.load.outcomes if o.what == "read" and o.status != 200)
    infra.RESULTS.append(
        infra.FaultResult(
            fault="kill -9 one of 2 portfolio replicas",
            load=(
                "2 traders: portfolio reads, trades (POST + key, retried with it); "
                f"a burst of {BURST} trades at the kill"
            ),
            requests=len(seen.load.outcomes),
            failures=failed_reads + sum(seen.refused().values()) + seen.unsettled,
            recovery=max(failed) if failed else 0.0,
            note=(
                f"the killed replica had handled {seen.trades_on_doomed} trades; "
                f"attempt statuses {dict(sorted(statuses.items()))}; {confirmed} trades "
                f"confirmed, {listed} listed; {seen.unsettled} keys never settled; "
                "recovery: the last retried answer after the kill"
            ),
        )
    )
    return seen


def test_the_replica_served_trades_and_died_of_the_kill(kill: PortfolioKill) -> None:
    assert kill.trades_on_doomed > 0, "it was in the rotation"
    assert kill.exit_code == -signal.SIGKILL


def test_no_read_fails(kill: PortfolioKill) -> None:
    reads = [o for o in kill.load.outcomes if o.what == "read"]
    assert reads and Counter(o.status for o in reads if o.status != 200) == Counter()


def test_no_trade_is_refused(kill: PortfolioKill) -> None:
    assert kill.refused() == Counter()


def test_every_idempotent_trade_is_settled_by_retrying(kill: PortfolioKill) -> None:
    assert kill.unsettled == 0


def test_each_keys_trade_is_listed_exactly_once(kill: PortfolioKill) -> None:
    for trader in kill.traders:
        trades = kill.trades_of(trader)
        by_key = Counter(t["notes"] for t in trades)
        assert by_key == Counter(dict.fromkeys(trader.committed, 1)), "lost or doubled"
        ids = {t["notes"]: t["id"] for t in trades}
        assert ids == trader.committed, "each key's trade is the one confirmed under it"
        assert {t["price"] for t in trades} == {PRICE}
