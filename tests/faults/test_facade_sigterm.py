"""SIGTERM to the facade with 1,000 open /ws/portfolio sockets and slow requests in flight:
the requests finish with their normal answers, every socket is closed with 1001 (going away),
and the process exits, cleanly, within its grace period. The slow requests are chat-session
lists answered by an assistant double after SLOW seconds."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

from stockfolio.assistant.v1 import assistant_pb2

from tests.faults.doubles import SlowService, serving
from tests.faults.infrastructure import (
    Answer,
    Client,
    Deployment,
    FaultResult,
    PrivatePostgres,
    PrivateRedis,
    client_of,
    poll,
    settings_for,
)
from tests.faults.sockets import WatchedSocket

SOCKETS = 1000
USERS = 4
IN_FLIGHT = 40
SLOW = 2.0
GRACE = 8.0
EXIT_MARGIN = 2.0
OPENING_AT_ONCE = 50
ASSISTANT = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name
GOING_AWAY = 1001


async def open_sockets(client: Client, tokens: list[str]) -> list[WatchedSocket]:
    gate = asyncio.Semaphore(OPENING_AT_ONCE)

    async def one(token: str) -> WatchedSocket:
        async with gate:
            watched = WatchedSocket(await client.socket("/ws/portfolio", token))
            await watched.send({"type": "ping"})
            return watched

    return list(await asyncio.gather(*(one(tokens[i % USERS]) for i in range(SOCKETS))))


async def test_sigterm_drains_requests_closes_1000_sockets_with_1001_and_exits_in_grace(
    tmp_path: Path,
    shared_postgres: PrivatePostgres,
    own_redis: PrivateRedis,
    record: list[FaultResult],
) -> None:
    reply = assistant_pb2.ListSessionsResponse(
        sessions=[assistant_pb2.ChatSession(id="c-double", title="From the double")]
    )
    double = SlowService(ASSISTANT, "ListSessions", reply, delay=SLOW)
    settings = settings_for(
        shared_postgres.service_urls(),
        own_redis.url,
        SHUTDOWN_GRACE=str(GRACE),
        WS_SOCKETS_PER_USER="0",
    )
    async with serving(double) as assistant_address:
        system = Deployment(tmp_path, {"users": 1, "portfolio": 1}, settings)
        system.facade.environ["ASSISTANT_ADDRS"] = assistant_address
        await system.start()
        try:
            async with client_of(system.url) as client:
                tokens = [(await client.register())[1] for _ in range(USERS)]
                sockets = await open_sockets(client, tokens)

                async def all_answered() -> bool:
                    return all(s.of_type("pong") for s in sockets)

                await poll(all_answered, f"{SOCKETS} sockets open and answering", within=60)

                in_flight = [
                    asyncio.create_task(
                        client.call("GET", "/api/v1/chat/sessions", token=tokens[i % USERS])
                    )
                    for i in range(IN_FLIGHT)
                ]

                async def all_reached() -> bool:
                    return double.calls >= IN_FLIGHT

                await poll(all_reached, "every slow request at the double", within=10)
                terminated_at = time.monotonic()
                system.facade.signal(signal.SIGTERM)
                answers: list[Answer] = await asyncio.gather(*in_flight)
                code = await system.facade.wait_exit(GRACE + EXIT_MARGIN + 5)
                exited_after = time.monotonic() - terminated_at

                async def all_closed() -> bool:
                    return all(s.closed for s in sockets)

                await poll(all_closed, "every socket closed", within=10)
                closes = Counter(s.close_code for s in sockets)
                close_times = [s.closed_at - terminated_at for s in sockets if s.closed_at]
                for socket in sockets:
                    await socket.close()
        finally:
            await system.stop()

    statuses = Counter(a.status for a in answers)
    record.append(
        FaultResult(
            fault="SIGTERM to the facade",
            load=(
                f"{SOCKETS} /ws/portfolio sockets ({USERS} users), "
                f"{IN_FLIGHT} requests of {SLOW:.0f} s in flight"
            ),
            requests=IN_FLIGHT + SOCKETS,
            failures=IN_FLIGHT - statuses[200] + SOCKETS - closes[GOING_AWAY],
            recovery=None,
            note=(
                f"exit {code} after {exited_after:.2f} s (grace {GRACE:.0f} s); sockets closed "
                f"{min(close_times):.2f}-{max(close_times):.2f} s after the signal, codes "
                f"{dict(closes)}; requests {dict(statuses)}"
            ),
        )
    )
    assert statuses == {200: IN_FLIGHT}, [a.body for a in answers if a.status != 200][:3]
    assert all(
        [(s["id"], s["title"]) for s in a.body["data"]] == [("c-double", "From the double")]
        for a in answers
    )
    assert closes == {GOING_AWAY: SOCKETS}
    assert code == 0, system.facade.tail()
    assert exited_after <= GRACE + EXIT_MARGIN
