"""Redis stopped for 30 s (STOCKFOLIO_FAULTS_REDIS_OUTAGE) under a steady load of reads and
logins, with price sockets and two chat sockets open: everything keeps serving (rate limits,
session and quote caches degrade to the process's own), prices keep ticking, and once Redis is
back the chat relay between the two sockets works again and no socket is left silent."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

from tests.faults import infrastructure as infra
from tests.faults.sockets import WatchedSocket

OUTAGE = float(os.environ.get("STOCKFOLIO_FAULTS_REDIS_OUTAGE", "30"))
SERVICES = ("users", "portfolio", "assistant")
TICK_MS = 200
SILENT = 3.0  # a price socket quiet this long is silent
RELAY_WITHIN = 15.0  # the chat relay resubscribes with a backoff of up to 10 s
PRICE_SOCKETS = 4


async def relayed(sender: WatchedSocket, receiver: WatchedSocket, session_id: str) -> bool:
    """A typing_start from `sender` reaches `receiver` (within a second)."""
    sent_at = time.monotonic()
    await sender.send({"type": "typing_start", "sessionId": session_id})
    deadline = sent_at + 1.0
    while time.monotonic() < deadline:
        if receiver.of_type("typing", since=sent_at):
            return True
        await asyncio.sleep(0.02)
    return False


async def chat_pair(client: infra.Client, token: str) -> tuple[WatchedSocket, WatchedSocket, str]:
    started = await client.call(
        "POST", "/api/v1/chat/message", token=token, body={"message": "hello"}
    )
    assert started.status == 200, started.body
    session_id = started.body["data"]["sessionId"]
    pair = [WatchedSocket(await client.socket("/ws/chat", token)) for _ in range(2)]
    for socket in pair:
        await socket.send({"type": "join_session", "sessionId": session_id})

    async def joined() -> bool:
        return all(s.of_type("joined") for s in pair)

    await infra.poll(joined, "both chat sockets joined", within=10)
    return pair[0], pair[1], session_id


async def test_redis_down_for_30_s_everything_serves_and_pub_sub_comes_back(
    tmp_path: Path,
    shared_postgres: infra.PrivatePostgres,
    own_redis: infra.PrivateRedis,
    record: list[infra.FaultResult],
) -> None:
    async with infra.under_load(
        tmp_path,
        dict.fromkeys(SERVICES, 1),
        shared_postgres,
        own_redis,
        MOCK_UPDATE_INTERVAL=str(TICK_MS),
    ) as (_, client, load):
        user_id, token = await client.register()
        created = await client.call(
            "POST", "/api/v1/portfolios", token=token, body={"name": "R", "initialCash": "100"}
        )
        assert created.status == 201, created.body
        portfolio_id = created.body["data"]["id"]
        email = (await client.call("GET", "/api/v1/users/me", token=token)).body["data"]["email"]

        async def read(what: str, path: str, check: str, expected: str) -> None:
            started = time.monotonic()
            try:
                answer = await client.call("GET", path, token=token, within=10)
            except (TimeoutError, OSError):
                load.note(what, 0, started)
                return
            load.note(what, answer.status, started)
            if answer.status == 200:
                assert answer.body["data"][check] == expected, answer.body

        async def me() -> None:
            await read("me", "/api/v1/users/me", "id", user_id)

        async def portfolio() -> None:
            await read("portfolio", f"/api/v1/portfolios/{portfolio_id}", "id", portfolio_id)

        async def price() -> None:
            await read("price", "/api/v1/stocks/AAPL/price", "symbol", "AAPL")

        async def login() -> None:
            started = time.monotonic()
            answer = await client.call(
                "POST",
                "/api/v1/auth/login",
                body={"email": email, "password": infra.password_of(email)},
                within=10,
            )
            load.note("login", answer.status, started)
            if answer.status == 200:
                assert answer.body["data"]["user"]["id"] == user_id

        prices = [
            WatchedSocket(await client.socket("/ws/portfolio", token)) for _ in range(PRICE_SOCKETS)
        ]
        for socket in prices:
            await socket.send({"type": "subscribe", "symbols": ["AAPL"]})
        sender, receiver, session_id = await chat_pair(client, token)

        async with infra.steady(load, [me, portfolio, price, login], pause=0.05):

            async def ticking_and_relaying() -> bool:
                ticking = all(s.of_type("price") for s in prices)
                return ticking and await relayed(sender, receiver, session_id)

            await infra.poll(ticking_and_relaying, "prices and the chat relay before the fault", 15)

            down_at = time.monotonic()
            await asyncio.to_thread(own_redis.stop)
            await asyncio.sleep(OUTAGE)
            # Prices do not go through Redis: they ticked all along.
            silent_in_outage = [
                s for s in prices if not s.of_type("price", since=time.monotonic() - SILENT)
            ]
            await asyncio.to_thread(own_redis.start)
            back_at = time.monotonic()

            async def relay_back() -> bool:
                return await relayed(sender, receiver, session_id)

            relay_recovery = await infra.poll(
                relay_back, "the chat relay after Redis", RELAY_WITHIN
            )

            async def every_socket_heard() -> bool:
                return all(s.of_type("price", since=back_at) for s in prices)

            await infra.poll(every_socket_heard, "a price on every socket after Redis", SILENT)
            await asyncio.sleep(1.0)

        closed = [s for s in [*prices, sender, receiver] if s.closed]
        for socket in [*prices, sender, receiver]:
            await socket.close()

    in_outage = [o for o in load.outcomes if o.at > down_at and o.at - o.elapsed < back_at]
    failed = [o for o in load.outcomes if o.status != 200]
    record.append(
        infra.FaultResult(
            fault=f"Redis down {back_at - down_at:.0f} s",
            load=f"4 readers (me, portfolio, price, login), {PRICE_SOCKETS} price + 2 chat sockets",
            requests=len(load.outcomes),
            failures=len(failed),
            recovery=relay_recovery,
            note=(
                f"{len(in_outage)} requests during the outage; recovery: the chat relay after "
                f"Redis returned; statuses {dict(Counter(o.status for o in load.outcomes))}"
            ),
        )
    )
    assert failed == [], Counter((o.what, o.status) for o in failed)
    assert len(in_outage) > OUTAGE, "the load did not run through the outage"
    assert {o.what for o in in_outage} == {"me", "portfolio", "price", "login"}
    assert silent_in_outage == []
    assert closed == [], [s.close_code for s in closed]
