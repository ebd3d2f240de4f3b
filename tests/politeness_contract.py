"""Checks that every :class:`checks.politeness.Politeness` must pass, run against the
in-process one (``tests/test_politeness.py``) and the Redis one (``tests/test_redis_sinks.py``)."""

from __future__ import annotations

import asyncio

from checks.politeness import Politeness

__all__ = ["check_give_back"]

#: how closely a permit's due time is known (Redis: the mapping of its clock)
_CLOSE = 0.003


async def check_give_back(p: Politeness, ip: str, other_ip: str, late_ip: str,
                          far_ip: str, *, lead: float = 0.0) -> None:
    """Permits given back return to the grid (:meth:`checks.politeness.RcptPacing.take`).

    ``p`` limits RCPT to 5 per second (a permit every 206 ms); the four hosts are unused;
    ``lead`` is how soon after the reservation a permit may start at the earliest.
    """
    interval = p.rcpt_interval(ip)
    assert 0.2 < interval < 0.21
    # the tail of a reservation, given back at once: the next permit takes its place
    first = await p.reserve_rcpts(ip, 3)
    again = await p.reserve_rcpts(ip, 1, unused=first.unused(1))
    assert abs(again.due[0] - first.due[1]) < _CLOSE
    after = await p.reserve_rcpts(ip, 1)
    assert abs(after.due[0] - first.due[2]) < _CLOSE  # and the grid goes on from there

    # a permit that came late, given back while it is still the grid's end: the next one
    # starts now, not a whole interval after it
    late = await p.reserve_rcpts(late_ip, 1)
    await asyncio.sleep(0.05)
    replaced = await p.reserve_rcpts(late_ip, 1, unused=late.unused(0))
    assert 0.05 - _CLOSE < replaced.due[0] - late.due[0] < 0.05 + lead + 0.03

    # a permit reserved after it: the new one still takes the late one's part, and the
    # permits reserved from then on move by as much
    moved = await p.reserve_rcpts(other_ip, 1)
    taken = await p.reserve_rcpts(other_ip, 1)
    await asyncio.sleep(0.05)
    instead = await p.reserve_rcpts(other_ip, 1, unused=moved.unused(0))
    shift = instead.due[0] - moved.due[0]
    assert 0.05 - _CLOSE < shift < 0.05 + lead + 0.03
    following = await p.reserve_rcpts(other_ip, 1)
    assert abs(following.due[0] - (taken.due[0] + interval + shift)) < _CLOSE

    # a second of permits reserved after it: it stays lost
    lost = await p.reserve_rcpts(far_ip, 1)
    ahead = await p.reserve_rcpts(far_ip, 5)
    await asyncio.sleep(0.05)
    behind = await p.reserve_rcpts(far_ip, 1, unused=lost.unused(0))
    assert abs(behind.due[0] - (ahead.due[-1] + interval)) < _CLOSE
