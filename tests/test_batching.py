"""The keyed batcher: batching by key, concurrency across keys, one batch per key."""

from __future__ import annotations

import asyncio

import pytest

from agents.batching import KeyedBatcher

pytestmark = pytest.mark.asyncio


async def test_items_of_a_key_arriving_together_share_one_call() -> None:
    calls: list[list[str]] = []

    async def run(items: list[str]) -> list[str]:
        calls.append(items)
        return [i.upper() for i in items]

    b: KeyedBatcher[str, str] = KeyedBatcher(run, window=0.05, max_batch=10)
    results = await asyncio.gather(b.submit("d1", "a"), b.submit("d1", "b"),
                                   b.submit("d2", "c"))
    assert list(results) == ["A", "B", "C"]
    assert sorted(map(sorted, calls)) == [["a", "b"], ["c"]]


async def test_max_batch_splits_and_failures_reach_every_submitter() -> None:
    async def run(items: list[int]) -> list[int]:
        if 99 in items:
            raise RuntimeError("boom")
        return items

    b: KeyedBatcher[int, int] = KeyedBatcher(run, window=10, max_batch=2)
    assert list(await asyncio.gather(b.submit("k", 1), b.submit("k", 2))) == [1, 2]
    outcome = await asyncio.gather(b.submit("x", 99), b.submit("x", 3),
                                   return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcome)


async def test_serial_per_key_runs_one_batch_at_a_time_and_slow_keys_do_not_block() -> None:
    running: dict[str, int] = {"slow": 0, "fast": 0}
    peak: dict[str, int] = {"slow": 0, "fast": 0}
    calls: list[tuple[str, int]] = []

    async def run(items: list[tuple[str, int]]) -> list[int]:
        key = items[0][0]
        running[key] += 1
        peak[key] = max(peak[key], running[key])
        calls.append((key, len(items)))
        await asyncio.sleep(0.3 if key == "slow" else 0.01)
        running[key] -= 1
        return [n for _, n in items]

    b: KeyedBatcher[tuple[str, int], int] = KeyedBatcher(run, window=0.01, max_batch=50,
                                                          serial_per_key=True)
    first = asyncio.create_task(b.submit("slow", ("slow", 0)))
    await asyncio.sleep(0.05)  # the slow batch is running now
    later = [asyncio.create_task(b.submit("slow", ("slow", i))) for i in range(1, 4)]
    fast = await asyncio.wait_for(b.submit("fast", ("fast", 9)), 0.2)  # not stalled
    assert fast == 9
    await asyncio.gather(first, *later)
    assert peak == {"slow": 1, "fast": 1}
    assert [c for c in calls if c[0] == "slow"] == [("slow", 1), ("slow", 3)]
