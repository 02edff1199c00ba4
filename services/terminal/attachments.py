"""One attachment to a terminal session (AttachTerminal): the session's output, with refusals of
the attachment's own input slipped in between, until the output ends or the caller's login does;
then how it ended. The servicer only translates frames and these events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from services.runtime.context import Identity
from services.runtime.errors import DomainError
from services.runtime.tasks import cancel_and_wait
from services.terminal.sessions import Session
from services.terminal.watcher import Watcher

# Refusals waiting to be sent at most: a client flooding bad frames loses the excess.
MAX_REFUSALS = 64

Frame = TypeVar("Frame")
# A frame of the attachment's input, applied to its session; DomainError refuses it.
Apply = Callable[[Session, Frame], None]
# Whether a caller's login has ended (the error the attachment ends with), None while it holds.
SessionOver = Callable[[Identity], Awaitable[DomainError | None]]


@dataclass(frozen=True)
class Refused:
    """A frame of this attachment's input that the rules refused: the attachment goes on."""

    error: DomainError


@dataclass(frozen=True)
class Ended:
    """How the attachment ended: `exited` (with the shell's code), `dropped` (too far behind),
    `closed`, or `replica_lost`."""

    code: int
    reason: str


# What an attachment tells: its session first (joined), then output and refusals, its end last.
Told = Session | bytes | Refused | Ended


async def attached(
    session: Session,
    *,
    replay: bool,
    frames: AsyncIterator[Frame],
    apply: Apply[Frame],
    revoked: Callable[[], Coroutine[Any, Any, DomainError]],
) -> AsyncGenerator[Told, None]:
    """The session (once watched: no output after it is missed), its output (its scrollback
    first, with `replay`) and refusals of `frames`, then its end; raises the DomainError
    `revoked` returns if that comes first (the caller's login ended)."""
    watcher = session.watch(replay=replay)
    refusals: asyncio.Queue[Refused] = asyncio.Queue(maxsize=MAX_REFUSALS)
    pump = asyncio.create_task(_pump_input(session, frames, apply, refusals))
    until = asyncio.create_task(revoked())
    try:
        yield session
        async for told in _merge(watcher, refusals, until):
            yield told
        if until.done():
            raise until.result()
        yield await _end_of(session, watcher)
    finally:
        watcher.close()
        await cancel_and_wait(pump)
        await cancel_and_wait(until)


async def until_revoked(
    identity: Identity, over: SessionOver | None, interval: float
) -> DomainError:
    """Returns, once the users service says the caller's own login is over (a logout of it or
    everywhere, SESSION_REVOKED; its own end, SESSION_EXPIRED), the error the attachment ends
    with; a check that cannot be made now is made again later. (The token's expiry does not
    end it: a browser's socket renews its token without joining again, and the facade closes
    a socket whose token lapses.)"""
    if over is None:
        await asyncio.Event().wait()
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(DomainError):  # users unreachable: ask again later
            ended = await over(identity) if over is not None else None
            if ended is not None:
                return ended


async def _end_of(session: Session, watcher: Watcher) -> Ended:
    if watcher.dropped:
        return Ended(0, "dropped")
    if session.state == "exited":
        code = await session.finished()  # the exit status is known once the shell is reaped
        return Ended(code or 0, "exited")
    return Ended(0, "closed")


async def _merge(
    watcher: Watcher, refusals: asyncio.Queue[Refused], until: asyncio.Task[DomainError]
) -> AsyncIterator[Told]:
    """The session's output, with refusals slipped in between, until the output ends (or
    `until` does). One pending read of each kind at a time: nothing buffers here beyond the
    watcher's own bound."""
    output: asyncio.Task[bytes] | None = None
    refusal: asyncio.Task[Refused] | None = None
    try:
        while True:
            if output is None:
                output = asyncio.ensure_future(anext(watcher))
            if refusal is None:
                refusal = asyncio.ensure_future(refusals.get())
            done, _ = await asyncio.wait(
                {output, refusal, until}, return_when=asyncio.FIRST_COMPLETED
            )
            if until in done:
                return
            if refusal in done:
                yield refusal.result()
                refusal = None
            if output in done:
                try:
                    chunk = output.result()
                except StopAsyncIteration:
                    return
                output = None
                yield chunk
    finally:
        for task in (output, refusal):
            if task is not None:
                task.cancel()


async def _pump_input(
    session: Session,
    frames: AsyncIterator[Frame],
    apply: Apply[Frame],
    refusals: asyncio.Queue[Refused],
) -> None:
    """Keystrokes and resizes into the session; a refused frame is answered, not fatal (also
    one the rules refuse as it is read: an out-of-range resize ended the input for good)."""
    iterator = aiter(frames)
    while True:
        try:
            frame = await anext(iterator)
            apply(session, frame)
        except StopAsyncIteration:
            return
        except DomainError as error:
            with contextlib.suppress(asyncio.QueueFull):  # a client flooding refusals
                refusals.put_nowait(Refused(error))
