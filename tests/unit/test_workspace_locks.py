"""Locks by key: one holder per key at a time, other keys unaffected, nothing kept once free."""

from __future__ import annotations

import asyncio

from services.workspace.locks import KeyedLocks


async def test_one_holder_per_key_other_keys_run_and_no_lock_outlives_its_users() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("ada"):
            order.append("ada 1 in")
            first_in.set()
            await release.wait()
            order.append("ada 1 out")

    async def second() -> None:
        await first_in.wait()
        async with locks.hold("ada"):
            order.append("ada 2 in")

    async def other() -> None:
        await first_in.wait()
        async with locks.hold("bob"):
            order.append("bob in")

    tasks = [asyncio.create_task(t()) for t in (first, second, other)]
    await first_in.wait()
    await asyncio.sleep(0.01)
    assert order == ["ada 1 in", "bob in"]
    assert len(locks) == 1  # bob's is gone; ada's is held and awaited
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["ada 1 in", "bob in", "ada 1 out", "ada 2 in"]
    assert len(locks) == 0


async def test_sharers_hold_a_key_at_once_and_one_alone_waits_for_them_in_turn() -> None:
    """Writes in a folder share its key; a move of the folder needs it alone: it waits for the
    writes under way, and a write that comes after it waits for the move (first come, first
    served: a stream of writes never starves the move)."""
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []
    release = {name: asyncio.Event() for name in ("w1", "w2", "move", "w3")}

    async def hold(name: str, *, shared: bool) -> None:
        async with locks.hold("d", shared=shared):
            order.append(f"{name} in")
            await release[name].wait()
        order.append(f"{name} out")

    w1 = asyncio.create_task(hold("w1", shared=True))
    w2 = asyncio.create_task(hold("w2", shared=True))
    await asyncio.sleep(0.01)
    move = asyncio.create_task(hold("move", shared=False))
    await asyncio.sleep(0.01)
    w3 = asyncio.create_task(hold("w3", shared=True))
    await asyncio.sleep(0.01)
    assert order == ["w1 in", "w2 in"]  # the move waits for both; w3 waits behind the move
    release["w1"].set()
    await asyncio.sleep(0.01)
    assert order == ["w1 in", "w2 in", "w1 out"]
    release["w2"].set()
    await asyncio.sleep(0.01)
    assert order[3:] == ["w2 out", "move in"]
    release["move"].set()
    release["w3"].set()
    await asyncio.gather(w1, w2, move, w3)
    assert order[5:] == ["move out", "w3 in", "w3 out"]
    assert len(locks) == 0


async def test_a_waiter_cancelled_in_line_hands_the_key_on() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    entered: list[str] = []
    first_in, release = asyncio.Event(), asyncio.Event()

    async def sharer() -> None:
        async with locks.hold("d", shared=True):
            first_in.set()
            await release.wait()

    async def mover() -> None:
        async with locks.hold("d"):
            entered.append("move")

    async def writer() -> None:
        async with locks.hold("d", shared=True):
            entered.append("write")

    holding = asyncio.create_task(sharer())
    await first_in.wait()
    move = asyncio.create_task(mover())
    await asyncio.sleep(0.01)
    write = asyncio.create_task(writer())  # behind the move
    await asyncio.sleep(0.01)
    assert entered == []
    move.cancel()  # the move gives up waiting: the write shares the key with the holder
    await asyncio.wait_for(write, 1)
    assert entered == ["write"]
    release.set()
    await holding
    assert move.cancelled() and len(locks) == 0
