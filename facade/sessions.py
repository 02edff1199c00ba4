"""Sessions that hold something open: WebSockets and streamed responses (SSE, NDJSON,
downloads, file watches). Each session is asked again every `WS_SESSION_RECHECK` seconds, once
however many things it holds, so that a logout (or a revoked session) ends them all within
that time, not when their access token expires."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from facade.envelope import ApiError
from services.runtime.tasks import cancel_and_wait

# Told to whatever a session held when the session ended.
Ended = Callable[[ApiError], None]
Validate = Callable[[str], Awaitable[object]]
RECHECK_CONCURRENCY = 16


class LiveSessions:
    """Open things by session, with the session's latest token, and the loop that checks them.

    `validate(token)` raises ApiError; a 401 means the session is over (logged out, revoked,
    expired): everything it holds is told, once, and forgotten. Any other failure (the users
    service unreachable) ends nothing: the services' own checks fail closed on every call.
    """

    def __init__(self, recheck: float, validate: Validate) -> None:
        self._recheck = recheck
        self._validate = validate
        # session id -> (the token its recheck asks with, when that token expires, holders)
        self._held: dict[str, tuple[str, float, dict[object, Ended]]] = {}
        self._loop: asyncio.Task[None] | None = None

    @property
    def recheck(self) -> float:
        return self._recheck

    def hold(
        self, session_id: str, token: str, expires_at: float, owner: object, ended: Ended
    ) -> None:
        """`owner` stays open while `session_id` lives; `ended` is called when it does not.
        The recheck asks with the session's token that lives longest: one holder's older token
        expiring is not its session ending (it closed every socket of the session with 4401)."""
        known, known_expiry, owners = self._held.get(session_id, ("", 0.0, {}))
        owners[owner] = ended
        if expires_at >= known_expiry or not known:
            known, known_expiry = token, expires_at
        self._held[session_id] = (known, known_expiry, owners)
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._run())

    def release(self, session_id: str, owner: object) -> None:
        found = self._held.get(session_id)
        if found is not None:
            found[2].pop(owner, None)
            if not found[2]:
                del self._held[session_id]

    async def close(self) -> None:
        await cancel_and_wait(self._loop)
        self._loop = None

    async def _run(self) -> None:
        limit = asyncio.Semaphore(RECHECK_CONCURRENCY)

        async def check(session_id: str, token: str) -> None:
            async with limit:
                try:
                    await self._validate(token)
                except ApiError as error:
                    if error.status == 401:
                        self._end(session_id, error)

        while True:
            await asyncio.sleep(self._recheck)
            sessions = [(sid, token) for sid, (token, _, _) in self._held.items()]
            await asyncio.gather(*(check(sid, token) for sid, token in sessions))

    def _end(self, session_id: str, error: ApiError) -> None:
        found = self._held.pop(session_id, None)
        for ended in list(found[2].values()) if found else ():
            ended(error)


class Expiries:
    """Calls due at wall-clock times (epoch seconds), one timer per distinct time: the sockets
    holding one token expire at its expiry together, so thousands of sockets share a few
    timers (a timer of its own cost each socket about 600 bytes)."""

    def __init__(self) -> None:
        self._due: dict[float, dict[object, Callable[[], None]]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}

    def add(self, when: float, owner: object, call: Callable[[], None]) -> None:
        """`call()` at `when`, unless `discard(when, owner)` comes first."""
        group = self._due.get(when)
        if group is None:
            group = self._due[when] = {}
            delay = max(0.0, when - time.time())
            self._timers[when] = asyncio.get_running_loop().call_later(delay, self._fire, when)
        group[owner] = call

    def discard(self, when: float, owner: object) -> None:
        group = self._due.get(when)
        if group is not None and group.pop(owner, None) is not None and not group:
            del self._due[when]
            self._timers.pop(when).cancel()

    @property
    def timers(self) -> int:
        return len(self._timers)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()

    def _fire(self, when: float) -> None:
        self._timers.pop(when, None)
        for call in list(self._due.pop(when, {}).values()):
            call()
