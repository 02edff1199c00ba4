"""A database that goes away for a while (found by the fault suite, tests/faults): calls that
meet it answer UNAVAILABLE (503, worth a retry) rather than INTERNAL (500), and the health
watch checks a dependency that is down often, so the service serves again soon after it is
back."""

from __future__ import annotations

import asyncio

import grpc
import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError

from services.runtime.db import database_conflict, database_unreachable
from services.runtime.health import Health
from services.runtime.interceptors import _status_for
from services.runtime.tasks import cancel_and_wait
from tests.waiting import until


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_a_refused_or_lost_database_connection_is_unavailable_not_internal() -> None:
    lost = DBAPIError("COMMIT", {}, Exception("server closed the connection"))
    lost.connection_invalidated = True
    assert database_unreachable(refused()) and database_unreachable(lost)
    code, message, _ = _status_for(refused())
    assert (code, message) == (
        grpc.StatusCode.UNAVAILABLE,
        "the database is unavailable; retry shortly",
    )
    assert _status_for(lost)[0] == grpc.StatusCode.UNAVAILABLE


def test_other_failures_stay_internal() -> None:
    broken_query = DBAPIError("SELECT nonsense", {}, Exception("syntax error"))
    assert not database_unreachable(broken_query)
    assert _status_for(broken_query)[:2] == (grpc.StatusCode.INTERNAL, "internal error")
    assert _status_for(KeyError("x"))[0] == grpc.StatusCode.INTERNAL


def test_a_deadlock_or_a_serialization_failure_is_aborted_not_unavailable() -> None:
    """The database answered: another transaction won (PostgreSQL rolled this one back whole).
    ABORTED (409, worth a retry), never UNAVAILABLE (503, "the database is unavailable"),
    which sent clients and the quota's accounting down the outage road."""
    for lost_to_another in (
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
    ):
        error = OperationalError("UPDATE quota_usage", {}, lost_to_another)
        assert database_conflict(error) and not database_unreachable(error)
        code, message, _ = _status_for(error)
        assert (code, message) == (
            grpc.StatusCode.ABORTED,
            "the change met another one made at the same moment and was not made; retry it",
        )


def test_a_statement_the_servers_timeout_cancelled_is_unavailable_not_internal() -> None:
    # An operator's statement_timeout cancels a statement of a database too busy now: a retry
    # may pass, and it is no fault of the request (never a 500).
    cancelled = OperationalError("SELECT", {}, psycopg.errors.QueryCanceled("statement timeout"))
    shutting_down = OperationalError("SELECT", {}, psycopg.errors.AdminShutdown("terminating"))
    assert database_unreachable(cancelled) and not database_conflict(cancelled)
    assert _status_for(cancelled)[0] == grpc.StatusCode.UNAVAILABLE
    assert database_unreachable(shutting_down)
    assert _status_for(shutting_down)[0] == grpc.StatusCode.UNAVAILABLE


async def test_a_dependency_that_is_down_is_checked_often_and_serving_resumes_soon() -> None:
    up = False
    checks = 0

    async def database() -> bool:
        nonlocal checks
        checks += 1
        return up

    health = Health(["x.v1.X"], {"database": database})
    # A long interval: only the faster re-check of a dependency that is down can notice its
    # return within this test's time.
    watch = asyncio.create_task(health.watch(interval=3600, down_interval=0.05))
    try:
        await until(lambda: checks >= 3, "the down dependency checked again and again")
        assert not health.serving
        up = True
        await until(lambda: health.serving, "serving again")
        assert health.report() == {"status": "SERVING", "dependencies": {"database": "up"}}
    finally:
        await cancel_and_wait(watch)
