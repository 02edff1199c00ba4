"""facade/sessions.py's Expiries: sockets holding one token share one timer, each is called at
the expiry unless discarded first, and the last one discarded takes the timer with it."""

from __future__ import annotations

import asyncio
import time

from facade.sessions import Expiries
from tests.waiting import until


async def test_owners_of_one_expiry_share_a_timer_and_are_all_called() -> None:
    expiries = Expiries()
    when = time.time() + 0.2
    called: list[str] = []
    for name in ("a", "b", "c"):
        expiries.add(when, name, lambda name=name: called.append(name))  # type: ignore[misc]
    expiries.add(when + 60, "later", lambda: called.append("later"))
    assert expiries.timers == 2
    expiries.discard(when, "b")
    await until(lambda: len(called) == 2, "the expiry")
    assert sorted(called) == ["a", "c"]
    assert expiries.timers == 1  # the later one waits
    expiries.close()
    assert expiries.timers == 0


async def test_the_last_owner_discarded_cancels_the_timer() -> None:
    expiries = Expiries()
    when = time.time() + 0.05
    called: list[str] = []
    expiries.add(when, "a", lambda: called.append("a"))
    expiries.add(when, "b", lambda: called.append("b"))
    expiries.discard(when, "a")
    expiries.discard(when, "b")
    expiries.discard(when, "b")  # again, or never added: nothing happens
    expiries.discard(0.0, "a")
    assert expiries.timers == 0
    await asyncio.sleep(0.15)  # past the expiry: nothing may be called (not a wait for it)
    assert called == []


async def test_an_expiry_already_past_is_called_at_once() -> None:
    expiries = Expiries()
    called: list[str] = []
    expiries.add(time.time() - 5, "late", lambda: called.append("late"))
    await until(lambda: called == ["late"], "the past expiry")
    assert expiries.timers == 0
