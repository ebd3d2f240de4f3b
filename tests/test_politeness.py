"""In-process politeness (checks/politeness.py LocalPoliteness): connection slots per host."""

from __future__ import annotations

import asyncio
import heapq
import random

import pytest

from checks.politeness import LATE_LIMIT, GridSpan, HostLimits, LocalPoliteness, RcptPacing
from tests.politeness_contract import check_give_back

HOST = "192.0.2.1"


async def hold_all(p: LocalPoliteness, sessions: int, hold: float) -> int:
    """Run ``sessions`` sessions of ``hold`` seconds at once; the most open at one time."""
    most = 0

    async def session() -> None:
        nonlocal most
        async with p.connection(HOST):
            most = max(most, p.active(HOST))
            await asyncio.sleep(hold)

    await asyncio.gather(*(session() for _ in range(sessions)))
    return most


@pytest.mark.asyncio
async def test_never_more_sessions_than_the_limit() -> None:
    p = LocalPoliteness(max_connections=2, rcpt_per_second=10)
    assert await hold_all(p, 7, 0.01) == 2
    assert p.active(HOST) == 0


@pytest.mark.asyncio
async def test_a_limit_set_after_the_host_was_first_used_is_the_one_kept() -> None:
    """A provider's own limit is set when the host's MX names are learned, which can be
    after the host was first used: the slots follow the limit as it is now."""
    p = LocalPoliteness(max_connections=1, rcpt_per_second=10)
    assert await hold_all(p, 3, 0.01) == 1
    p.limits.set(HOST, HostLimits.of(3, 10))
    assert await hold_all(p, 6, 0.05) == 3
    p.limits.set(HOST, HostLimits.of(2, 10))
    assert await hold_all(p, 6, 0.01) == 2


@pytest.mark.asyncio
async def test_a_limit_raised_while_sessions_wait_lets_them_in() -> None:
    p = LocalPoliteness(max_connections=1, rcpt_per_second=10)
    leave = [asyncio.Event() for _ in range(3)]
    entered: list[int] = []

    async def session(i: int) -> None:
        async with p.connection(HOST):
            entered.append(i)
            await leave[i].wait()

    tasks = [asyncio.ensure_future(session(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert entered == [0]
    p.limits.set(HOST, HostLimits.of(3, 10))
    async with p.connection("192.0.2.9"):  # another host: a slot of its own at once
        pass
    leave[0].set()  # the first leaves: both waiting fit the new limit, together
    await asyncio.sleep(0.01)
    assert entered == [0, 1, 2] and p.active(HOST) == 2
    for event in leave:
        event.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert p.active(HOST) == 0


@pytest.mark.asyncio
async def test_a_session_cancelled_while_it_waits_takes_no_slot_and_blocks_nobody() -> None:
    p = LocalPoliteness(max_connections=1, rcpt_per_second=10)
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with p.connection(HOST):
            first_in.set()
            await release.wait()

    async def waiter() -> None:
        async with p.connection(HOST):
            pass

    held = asyncio.ensure_future(holder())
    await first_in.wait()
    cancelled = asyncio.ensure_future(waiter())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    release.set()
    await held
    # nothing holds a slot, and nobody waits behind the cancelled one
    await asyncio.wait_for(waiter(), 1)
    assert p.active(HOST) == 0

    # woken for a slot, then cancelled before it ran: the turn passes to the next
    entered = asyncio.Event()
    release = asyncio.Event()
    first_in = asyncio.Event()
    held = asyncio.ensure_future(holder())
    await first_in.wait()
    woken = asyncio.ensure_future(waiter())

    async def next_one() -> None:
        async with p.connection(HOST):
            entered.set()

    after = asyncio.ensure_future(next_one())
    await asyncio.sleep(0.01)
    release.set()
    await held  # its release wakes `woken` ...
    woken.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(woken, return_exceptions=True)
    await asyncio.wait_for(entered.wait(), 1)
    await after
    assert p.active(HOST) == 0


@pytest.mark.asyncio
async def test_permits_given_back_return_to_the_grid_while_nobody_reserved_after() -> None:
    p = LocalPoliteness(max_connections=2, rcpt_per_second=5)
    await check_give_back(p, "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4")


def test_late_permits_given_back_never_put_more_than_the_rate_in_a_second() -> None:
    """The grid of RcptPacing.take with sessions that now and then come too late to a
    permit (mostly by 10 ms to half a second, else by seconds) and give it back:
    every 6 consecutive sends still span more than a second, though each may go up to
    ``LATE_LIMIT`` after its place. The grid's next free permit is forgotten a second
    after it passed, as the Redis key expires. (The proof is in the docstring of
    ``take``; this looks for a counterexample.)"""
    pacing = RcptPacing.for_rate(5)
    rng = random.Random(14)
    for _ in range(40):
        next_free, forgotten, sends = 0.0, 0.0, []
        wake = [(1000 + rng.uniform(0, 0.3), s) for s in range(rng.randint(1, 6))]
        unused: dict[int, GridSpan | None] = {}
        heapq.heapify(wake)
        while len(sends) < 300:
            now, session = heapq.heappop(wake)
            if now >= forgotten:
                next_free = 0.0  # what GET of an expired key gives the script
            first, next_free = pacing.take(next_free, now, 1, unused.pop(session, None))
            forgotten = next_free + 1.0
            if rng.random() < 0.3:  # too late: given back when the session finds out
                behind = (rng.uniform(LATE_LIMIT, 0.5) if rng.random() < 0.7
                          else rng.uniform(1.0, 3.0))
                late = first + behind
                unused[session] = GridSpan(first, first + pacing.interval)
                heapq.heappush(wake, (late, session))
            else:
                sent = first + rng.uniform(0, LATE_LIMIT)
                sends.append(sent)
                heapq.heappush(wake, (sent + rng.uniform(0.0, 0.5), session))
        sends.sort()
        assert min(b - a for a, b in zip(sends, sends[5:], strict=False)) > 1.0
