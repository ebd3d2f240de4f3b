"""Ordered acks and backpressure of the per-partition window (no Kafka needed)."""

from __future__ import annotations

import asyncio
import random

import pytest

from streams.ackwindow import OrderedAckWindow, Ticket

pytestmark = pytest.mark.asyncio


async def admitted(window: OrderedAckWindow[int], tp: str, offset: int) -> Ticket:
    """Admit ``offset`` (the item is the offset itself); it must not be refused."""
    ticket = await window.admit(tp, offset, offset)
    assert ticket is not None
    return ticket


async def test_acks_only_the_completed_prefix_in_offset_order() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(100, acked.append)
    tickets = [await admitted(window, "p0", offset) for offset in range(50)]
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
    assert a0 is not None and b0 is not None
    window.complete(b0)
    assert acked == [("b", 0)]
    window.complete(a0)
    assert acked == [("b", 0), ("a", 0)]


async def test_full_window_blocks_admission_until_an_event_finishes() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(2, acked.append, max_held=3)
    t0 = await admitted(window, "p", 0)
    t1 = await admitted(window, "p", 1)
    third = asyncio.create_task(admitted(window, "p", 2))
    await asyncio.sleep(0.05)
    assert not third.done()  # backpressure: two unfinished
    # a later one finishing makes room although the head is still in flight (not acked)
    window.complete(t1)
    t2 = await asyncio.wait_for(third, 1)
    assert acked == [] and window.in_flight() == 3
    window.complete(t2)
    # two finished and one unfinished are held: the hard bound on held events (3) stops it
    fourth = asyncio.create_task(admitted(window, "p", 3))
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
    t0 = await admitted(window, "p", 0)
    window.revoke(["p"])
    window.complete(t0)  # late completion of an event now owned by another worker
    assert acked == []
    t5 = await admitted(window, "p", 5)  # re-assigned later: a fresh window
    window.complete(t5)
    assert acked == [5]


async def test_an_offset_going_back_restarts_the_partition() -> None:
    """Redelivery from the committed offset (a reassignment, a seek): what was held is
    forgotten, never acked by us, and the redelivered events are acked in order."""
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(10, acked.append)
    stale = await admitted(window, "p", 40)
    first = await admitted(window, "p", 3)
    assert window.rewinds == 1 and window.in_flight("p") == 1
    window.complete(stale)
    assert acked == []
    window.complete(first)
    assert acked == [3]


async def test_an_offset_going_back_into_a_full_partition_acks_nothing_old() -> None:
    """The rewind is seen before the wait for room: events of the old window that finish
    while the redelivered one waits are never acked (they are being redelivered)."""
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(1, acked.append)
    old = await admitted(window, "p", 40)
    assert window.try_admit("p", 41, 41) is None  # full
    redelivered = await asyncio.wait_for(window.admit("p", 3, 3), 1)  # a fresh window
    assert redelivered is not None and window.rewinds == 1
    window.complete(old)
    assert acked == []
    window.complete(redelivered)
    assert acked == [3]


async def test_an_event_waiting_when_its_partition_is_revoked_is_not_admitted() -> None:
    """It belongs to the assignment that ended: the partition's next owner gets it again,
    from the committed offset, and must find the window empty (faust's generation check
    cannot see an event already handed to the stage)."""
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(1, acked.append)
    held = await admitted(window, "p", 40)
    waiting = asyncio.create_task(window.admit("p", 41, 41))
    await asyncio.sleep(0)
    assert not waiting.done()
    window.revoke(["p"])
    assert await asyncio.wait_for(waiting, 1) is None
    redelivered = await admitted(window, "p", 0)
    assert window.rewinds == 0
    window.complete(held)  # late: a ticket of the revoked assignment
    window.complete(redelivered)
    assert acked == [0]
