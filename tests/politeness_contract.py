"""Checks that every :class:`checks.politeness.Politeness` must pass, run against the
in-process one (``tests/test_politeness.py``) and the Redis one (``tests/test_redis_sinks.py``)."""

from __future__ import annotations

import asyncio

from checks.politeness import Politeness

__all__ = ["check_give_back"]


async def check_give_back(p: Politeness, ip: str, other_ip: str, late_ip: str) -> None:
    """Permits given back return to the grid only while nobody reserved after them.

    ``p`` limits RCPT to 5 per second (a permit every 206 ms); the three hosts are unused.
    """
    interval = p.rcpt_interval(ip)
    assert 0.2 < interval < 0.21
    # the tail of a reservation, given back at once: the next permit takes its place
    first = await p.reserve_rcpts(ip, 3)
    again = await p.reserve_rcpts(ip, 1, unused=first.unused(1))
    assert abs(again.due[0] - first.due[1]) < 0.003
    after = await p.reserve_rcpts(ip, 1)
    assert abs(after.due[0] - first.due[2]) < 0.003  # and the grid goes on from there

    # a permit that came late, given back while it is still the grid's end: the next one
    # starts now, not a whole interval after it
    late = await p.reserve_rcpts(late_ip, 1)
    await asyncio.sleep(0.05)
    replaced = await p.reserve_rcpts(late_ip, 1, unused=late.unused(0))
    assert replaced.due[0] - late.due[0] < 0.05 + 0.03

    # another reservation came after it: the late permit stays lost
    lost = await p.reserve_rcpts(other_ip, 1)
    taken = await p.reserve_rcpts(other_ip, 1)
    await asyncio.sleep(0.05)
    behind = await p.reserve_rcpts(other_ip, 1, unused=lost.unused(0))
    assert behind.due[0] - taken.due[0] > interval - 0.003
