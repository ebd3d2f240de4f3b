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


async def test_a_partition_that_comes_back_gets_no_work_done_twice() -> None:
    """Revoked with work finished and running, then given back from the committed offset:
    the finished events are acked without work, the running ones when their old work
    ends, and only offsets the old assignment never admitted are new work."""
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(10, acked.append)
    old = [await admitted(window, "p", offset) for offset in range(4)]
    window.complete(old[1])  # finished, held behind 0
    window.revoke(["p"])
    new = [await admitted(window, "p", offset) for offset in range(6)]
    assert [t.carried for t in new] == [True] * 4 + [False] * 2
    assert window.carried_over == 4 and window.in_flight("p") == 6
    window.complete(new[4])
    assert acked == []
    window.complete(old[0])  # the old work of 0 ends: 0 and 1 are acked now, in order
    assert acked == [0, 1]
    window.complete(old[3])
    window.complete(old[2])
    assert acked == [0, 1, 2, 3, 4]
    window.complete(new[5])
    assert acked == [0, 1, 2, 3, 4, 5] and window.in_flight() == 0


async def test_work_that_ends_before_its_redelivery_arrives_is_not_done_again() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(10, acked.append)
    old = [await admitted(window, "p", offset) for offset in range(3)]
    window.revoke(["p"])
    for ticket in old:
        window.complete(ticket)  # finished while the group rebalanced
    assert acked == []
    again = await admitted(window, "p", 0)
    assert again.carried and acked == [0]
    window.revoke(["p"])  # and again, before the rest came back
    rest = [await admitted(window, "p", offset) for offset in (1, 2, 3)]
    assert [t.carried for t in rest] == [True, True, False]
    assert acked == [0, 1, 2]


async def test_work_running_over_two_rebalances_completes_the_last_redelivery() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(10, acked.append)
    first = await admitted(window, "p", 7)
    window.revoke(["p"])
    second = await admitted(window, "p", 7)
    window.revoke(["p"])
    third = await admitted(window, "p", 7)
    assert second.carried and third.carried
    window.complete(first)
    assert acked == [7] and window.in_flight() == 0
    window.complete(second)  # late, and already accounted for: nothing happens
    window.complete(third)
    assert acked == [7]


async def test_the_stage_hands_carried_events_to_no_handler() -> None:
    """run_stage over a partition revoked mid-stream and redelivered from its committed
    offset: every offset is handled once, and the redelivered events are acked in order."""
    from agents.ports import RawEvent
    from streams.stage import run_stage
    from tests.fakes import FakeEvent, FakeMessage

    handled: list[int] = []
    gate = asyncio.Event()
    old_acks: list[int] = []
    new_acks: list[int] = []
    window: OrderedAckWindow[FakeEvent] = OrderedAckWindow(10, lambda e: e.ack())

    async def handler(events: list[RawEvent], done: object = None) -> list[str | None]:
        handled.extend(e.offset for e in events)
        if any(e.offset == 2 for e in events):
            await gate.wait()  # still running when the partition is revoked
        return [None] * len(events)

    class Rebalancing:
        def noack(self) -> Rebalancing:
            return self

        async def events(self) -> object:
            for offset in range(4):
                yield FakeEvent(FakeMessage(offset, b"x"), old_acks)
                await asyncio.sleep(0.02)  # one event per batch
            window.revoke([("m.submissions", 0)])
            for offset in range(2, 6):  # 0 and 1 were acked (committed at the revoke)
                yield FakeEvent(FakeMessage(offset, b"x"), new_acks)
            await asyncio.sleep(0.05)
            gate.set()

    class Publisher:
        async def publish_many(self, records: object) -> None: ...

    await run_stage(Rebalancing(), handler, publisher=Publisher(),  # type: ignore[arg-type]
                    dead_letter_topic="m.dead-letters", max_in_flight=10, name="t",
                    window=window, linger=0.001)
    for _ in range(100):
        if len(new_acks) == 4:
            break
        await asyncio.sleep(0.01)
    assert sorted(handled) == [0, 1, 2, 3, 4, 5]
    assert old_acks == [0, 1] and new_acks == [2, 3, 4, 5]
    assert window.carried_over == 2


async def test_acked_events_the_commit_missed_are_not_done_again() -> None:
    acked: list[int] = []
    window: OrderedAckWindow[int] = OrderedAckWindow(10, acked.append)
    for offset in range(3):
        window.complete(await admitted(window, "p", offset))
    window.revoke(["p"])  # before the commit reached 1 and 2: they come back
    again = [await admitted(window, "p", offset) for offset in (1, 2, 3)]
    assert [t.carried for t in again] == [True, True, False]
    assert acked == [0, 1, 2, 1, 2]  # the redeliveries are acked at once, without work
