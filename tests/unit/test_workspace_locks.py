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
