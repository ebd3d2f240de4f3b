"""Ordered acks and backpressure of the per-partition window (no Kafka needed)."""

from __future__ import annotations

import asyncio
import random

import pytest

from streams.ackwindow import OrderedAckWindow

pytestmark = pytest.mark.asyncio


async def test_acks_only_the_completed_prefix_in_offset_order() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(100, acked.append)
    tickets = [await window.admit("p0", offset, offset) for offset in range(50)]
    order = list(range(50))
    random.Random(7).shuffle(order)
    for i in order:
        before = list(acked)
        window.complete(tickets[i])
        # acked is always a prefix 0..k-1: never an offset after an unacked one
        assert acked == list(range(len(acked)))
        assert len(acked) >= len(before)
    assert acked == list(range(50))
    assert window.in_flight() == 0


async def test_partitions_are_independent() -> None:
    acked: list[tuple[str, int]] = []
    window: OrderedAckWindow[tuple[str, int]] = OrderedAckWindow(10, acked.append)
    a0 = await window.admit("a", 0, ("a", 0))
    b0 = await window.admit("b", 0, ("b", 0))
    window.complete(b0)
    assert acked == [("b", 0)]
    window.complete(a0)
    assert acked == [("b", 0), ("a", 0)]


async def test_full_window_blocks_admission_until_an_event_finishes() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(2, acked.append, max_held=3)
    t0 = await window.admit("p", 0, 0)
    t1 = await window.admit("p", 1, 1)
    third = asyncio.create_task(window.admit("p", 2, 2))
    await asyncio.sleep(0.05)
    assert not third.done()  # backpressure: two unfinished
    # a later one finishing makes room although the head is still in flight (not acked)
    window.complete(t1)
    t2 = await asyncio.wait_for(third, 1)
    assert acked == [] and window.in_flight() == 3
    window.complete(t2)
    # two finished and one unfinished are held: the hard bound on held events (3) stops it
    fourth = asyncio.create_task(window.admit("p", 3, 3))
    await asyncio.sleep(0.05)
    assert not fourth.done()
    window.complete(t0)
    await asyncio.wait_for(fourth, 1)
    assert acked == [0, 1, 2]
    assert window.try_admit("p", 4, 4) is not None
    assert window.try_admit("p", 5, 5) is None  # two unfinished again (3 and 4)


async def test_revoked_partition_is_never_acked_by_us() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(10, acked.append)
    t0 = await window.admit("p", 0, 0)
    window.revoke(["p"])
    window.complete(t0)  # late completion of an event now owned by another worker
    assert acked == []
    t5 = await window.admit("p", 5, 5)  # re-assigned later: a fresh window
    window.complete(t5)
    assert acked == [5]


async def test_offsets_must_increase() -> None:
    window: OrderedAckWindow[int] = OrderedAckWindow(10, lambda _: None)
    await window.admit("p", 3, 3)
    with pytest.raises(ValueError):
        await window.admit("p", 3, 3)
