"""A service that answers slowly: a test double stands at the portfolio service's address and
sleeps. Clients get 504 at the facade's deadline (never a hang); after the breaker's threshold
of such failures they get a fast 503 with Retry-After; after the cooldown one trial goes
through (half-open), and once the double answers promptly again the circuit closes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.test_utils import TestServer
from stockfolio.portfolio.v1 import portfolio_pb2

from facade.app import create_app
from facade.breaker import COOLDOWN, THRESHOLD
from facade.config import load_facade_config
from services.runtime.config import DOMAIN_SERVICES, MIN_RPC_DEADLINE, load_runtime_config
from tests.conftest import token_environment, users_codec
from tests.faults.doubles import SlowService, serving
from tests.faults.infrastructure import Answer, Client, FaultResult, client_of, poll

SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"].full_name
DEADLINE = MIN_RPC_DEADLINE  # the lowest RPC_DEADLINE the runtime accepts
# The facade's answer may come this much after its deadline (scheduling, a loaded machine).
MARGIN = 1.5
FAST = 0.25  # a refusal by an open circuit takes no longer than this
DEAD = "127.0.0.1:1"
LIST = "/api/v1/portfolios"


@contextlib.asynccontextmanager
async def double_at_a_port() -> AsyncIterator[tuple[SlowService, str]]:
    """ListPortfolios answered with one portfolio, after an hour until told otherwise."""
    reply = portfolio_pb2.ListPortfoliosResponse(
        portfolios=[portfolio_pb2.Portfolio(id="p-double", name="From the double")]
    )
    double = SlowService(SERVICE, "ListPortfolios", reply, delay=3600.0)
    async with serving(double) as address:
        yield double, address


@contextlib.asynccontextmanager
async def facade_before(address: str, var_dir: Path) -> AsyncIterator[Client]:
    """The real facade (in this process) with the double as its portfolio service."""
    environ = {
        "STOCKFOLIO_ENV": "test",
        "STOCKFOLIO_VAR_DIR": str(var_dir),
        "LOG_LEVEL": "ERROR",
        "FACADE_PORT": "0",
        "RATE_LIMIT_API": "0",
        "RATE_LIMIT_AUTH": "0",
        "RPC_DEADLINE": str(DEADLINE),
        **{f"{name.upper()}_ADDRS": DEAD for name in DOMAIN_SERVICES},
        "PORTFOLIO_ADDRS": address,
        **token_environment("facade"),
    }
    runtime = load_runtime_config("facade", environ, database=False)
    config = load_facade_config(environ, runtime=runtime)
    async with TestServer(create_app(config)) as server, client_of(str(server.make_url(""))) as c:
        yield c


def token() -> str:
    issued, _ = users_codec().issue_access(
        user_id="u-slow", session_id="s-slow", email="slow@example.test", roles=["user"]
    )
    return issued


async def listed(client: Client) -> Answer:
    return await client.call("GET", LIST, token=token(), within=DEADLINE * 4)


def refused_fast(answer: Answer) -> bool:
    return (
        answer.status == 503
        and answer.body["error"] == "SERVICE_UNAVAILABLE"
        and int(answer.headers["Retry-After"]) >= 1
        and answer.elapsed < FAST
    )


async def test_a_slow_service_times_out_opens_the_breaker_half_opens_and_closes(
    tmp_path: Path, record: list[FaultResult]
) -> None:
    answers: list[Answer] = []

    async def counted(client: Client) -> Answer:
        answer = await listed(client)
        answers.append(answer)
        return answer

    async with double_at_a_port() as (double, address), facade_before(address, tmp_path) as client:
        # THRESHOLD calls at once, each held past the deadline: 504 at the deadline, not later.
        timed_out = await asyncio.gather(*(counted(client) for _ in range(THRESHOLD)))
        assert [(a.status, a.body["error"]) for a in timed_out] == [
            (504, "DEADLINE_EXCEEDED")
        ] * THRESHOLD
        assert all(a.body["service"] == "facade" for a in timed_out), timed_out[0].body
        assert max(a.elapsed for a in timed_out) <= DEADLINE + MARGIN, [
            a.elapsed for a in timed_out
        ]
        assert double.calls == THRESHOLD

        # Open: refused at once, with a Retry-After, and the double is not called.
        opened_at = time.monotonic()
        refused = [await counted(client) for _ in range(20)]
        assert all(refused_fast(a) for a in refused), [(a.status, a.elapsed) for a in refused]
        assert double.calls == THRESHOLD

        # Half-open after the cooldown: one trial reaches the (still slow) double, the calls
        # beside it are refused, and its 504 opens the circuit again.
        trial: asyncio.Task[Answer] | None = None

        async def admitted() -> bool:
            nonlocal trial
            if double.calls > THRESHOLD:
                return True
            if trial is None or trial.done():
                trial = asyncio.create_task(counted(client))
                await asyncio.sleep(0.05)
            return double.calls > THRESHOLD

        await poll(admitted, "a trial call after the cooldown", within=COOLDOWN + 5)
        assert time.monotonic() - opened_at >= COOLDOWN - 0.5
        beside = await asyncio.gather(*(counted(client) for _ in range(10)))
        assert all(refused_fast(a) for a in beside), [(a.status, a.elapsed) for a in beside]
        assert trial is not None
        trial_answer = await trial
        assert (trial_answer.status, trial_answer.body["error"]) == (504, "DEADLINE_EXCEEDED")
        assert trial_answer.elapsed <= DEADLINE + MARGIN
        assert double.calls == THRESHOLD + 1
        assert refused_fast(await counted(client))

        # The service recovers: the next trial succeeds and the circuit closes.
        double.delay = 0.0
        healed_at = time.monotonic()
        first_success: list[Answer] = []

        async def served() -> bool:
            answer = await counted(client)
            if answer.status == 200:
                first_success.append(answer)
                return True
            assert refused_fast(answer), (answer.status, answer.body)
            return False

        recovery = await poll(served, "the circuit to close", within=COOLDOWN + 5)
        served_data = first_success[0].body["data"]
        assert [(p["id"], p["name"]) for p in served_data] == [("p-double", "From the double")]
        after = await asyncio.gather(*(counted(client) for _ in range(20)))
        assert [(a.status, a.body["data"][0]["name"]) for a in after] == [
            (200, "From the double")
        ] * 20

    slow = [a for a in answers if a.status == 504]
    record.append(
        FaultResult(
            fault="slow service (portfolio double, deadline 5 s)",
            load=f"{THRESHOLD} concurrent, then polling",
            requests=len(answers),
            failures=sum(1 for a in answers if a.status not in {200, 503, 504}),
            recovery=recovery,
            note=(
                f"{len(slow)}x 504 (max {max(a.elapsed for a in slow):.2f} s); 503 in "
                f"≤{max(a.elapsed for a in answers if a.status == 503) * 1000:.0f} ms; "
                f"closed {time.monotonic() - healed_at:.1f} s after the fix"
            ),
        )
    )
