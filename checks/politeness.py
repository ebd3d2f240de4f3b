"""Politeness toward mail servers: per-MX connection slots and RCPT rate.

:class:`Politeness` is the interface the probe uses; :class:`LocalPoliteness` enforces
the limits inside one process. A Redis implementation (in ``sinks``) makes them global
across workers, which matters because many domains share the same MX hosts.

The RCPT rate is a sliding window (:func:`window_slots`): at most ``capacity`` permits
(the per-second rate, rounded down, at least 1) in any window of ``capacity / rate``
seconds, widened by :data:`RATE_MARGIN`. Permits are reserved in bulk
(:meth:`Politeness.reserve_rcpts`): one call, one Redis round trip, for a whole pipelined
group of ``RCPT TO`` commands.

>>> import asyncio
>>> async def demo() -> tuple[int, list[float]]:
...     p = LocalPoliteness(max_connections=2, rcpt_per_second=2)
...     async with p.connection("192.0.2.1"):
...         waits = await p.reserve_rcpts("192.0.2.1", 3)
...         return p.active("192.0.2.1"), [round(w, 2) for w in waits]
>>> asyncio.run(demo())
(1, [0.0, 0.0, 1.02])
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

__all__ = ["Politeness", "LocalPoliteness", "RATE_MARGIN", "window_shape", "window_slots"]

#: The RCPT window is 2 % longer than ``capacity / rate``: the permits are exact, but the
#: moments the commands reach the server jitter by a few milliseconds, and without slack a
#: server counting any rolling second would now and then see one RCPT more than the limit.
#: (It also caps the use of the budget at 98 %.)
RATE_MARGIN = 1.02


def window_shape(rcpt_per_second: float) -> tuple[int, float]:
    """``(capacity, window_seconds)`` of the sliding RCPT window for a rate.

    >>> window_shape(5), window_shape(200)[0], window_shape(0.5)
    ((5, 1.02), 200, (1, 2.04))
    """
    capacity = max(1, math.floor(rcpt_per_second))
    return capacity, round(RATE_MARGIN * capacity / rcpt_per_second, 9)


def window_slots(history: deque[float], now: float, count: int, capacity: int,
                 window: float) -> list[float]:
    """Grant ``count`` permits; returns their times and appends them to ``history``.

    ``history`` holds the times of the last ``capacity`` permits (oldest first) and is
    trimmed to that. A permit goes at the earliest time that is not before ``now``, not
    before the previous permit, and at least ``window`` after the permit ``capacity``
    places earlier: so no window of that length ever holds more than ``capacity``.

    >>> h: deque[float] = deque()
    >>> window_slots(h, 10.0, 3, 2, 1.0)
    [10.0, 10.0, 11.0]
    >>> window_slots(h, 10.5, 1, 2, 1.0), list(h)
    ([11.0], [11.0, 11.0])
    """
    out: list[float] = []
    last = history[-1] if history else now
    for _ in range(count):
        slot = max(now, last)
        if len(history) >= capacity:
            slot = max(slot, history[-capacity] + window)
        history.append(slot)
        out.append(slot)
        last = slot
    while len(history) > capacity:
        history.popleft()
    return out


class Politeness(Protocol):
    """Limits per MX host (keyed by the IP address we connect to)."""

    def connection(self, mx_ip: str) -> AbstractAsyncContextManager[None]:
        """Hold one of the host's connection slots for the duration of a session."""
        ...

    async def reserve_rcpts(self, mx_ip: str, count: int) -> list[float]:
        """Reserve ``count`` RCPT permits of the host at once.

        Returns, for each, the seconds from now until it may be used (non-decreasing).
        """
        ...


class LocalPoliteness:
    """In-process limits: a semaphore and a spacing of RCPTs per MX host."""

    def __init__(self, *, max_connections: int, rcpt_per_second: float) -> None:
        self.max_connections = max_connections
        self.capacity, self.window = (window_shape(rcpt_per_second) if rcpt_per_second > 0
                                      else (0, 0.0))
        self._history: dict[str, deque[float]] = defaultdict(deque)
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(max_connections)
        )
        self._active: dict[str, int] = defaultdict(int)

    def active(self, mx_ip: str) -> int:
        return self._active[mx_ip]

    @asynccontextmanager
    async def _hold(self, mx_ip: str) -> AsyncIterator[None]:
        async with self._slots[mx_ip]:
            self._active[mx_ip] += 1
            try:
                yield
            finally:
                self._active[mx_ip] -= 1

    def connection(self, mx_ip: str) -> AbstractAsyncContextManager[None]:
        return self._hold(mx_ip)

    async def reserve_rcpts(self, mx_ip: str, count: int) -> list[float]:
        if not self.capacity:
            return [0.0] * count
        now = time.monotonic()
        slots = window_slots(self._history[mx_ip], now, count, self.capacity, self.window)
        return [slot - now for slot in slots]

    async def before_rcpt(self, mx_ip: str) -> None:
        """Wait for one permit (a convenience over :meth:`reserve_rcpts`)."""
        (wait,) = await self.reserve_rcpts(mx_ip, 1)
        if wait > 0:
            await asyncio.sleep(wait)
