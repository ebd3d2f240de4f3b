"""Politeness toward mail servers: per-MX connection slots and RCPT rate.

:class:`Politeness` is the interface the probe uses; :class:`LocalPoliteness` enforces
the limits inside one process. A Redis implementation (in ``sinks``) makes them global
across workers, which matters because many domains share the same MX hosts.

>>> import asyncio
>>> async def demo() -> int:
...     p = LocalPoliteness(max_connections=2, rcpt_per_second=100)
...     async with p.connection("192.0.2.1"):
...         await p.before_rcpt("192.0.2.1")
...         return p.active("192.0.2.1")
>>> asyncio.run(demo())
1
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

__all__ = ["Politeness", "LocalPoliteness", "rcpt_interval", "RATE_MARGIN"]

#: RCPTs are spaced 5 % wider than ``1 / rate``: the permits are exact, but the moments the
#: commands reach the server jitter by a few milliseconds, and without slack a server
#: counting any rolling second would now and then see one RCPT more than the limit.
RATE_MARGIN = 1.05


def rcpt_interval(rcpt_per_second: float) -> float:
    """Seconds between two RCPT permits for one MX host.

    >>> round(rcpt_interval(20), 4)
    0.0525
    """
    return RATE_MARGIN / rcpt_per_second if rcpt_per_second > 0 else 0.0


class Politeness(Protocol):
    """Limits per MX host (keyed by the IP address we connect to)."""

    def connection(self, mx_ip: str) -> AbstractAsyncContextManager[None]:
        """Hold one of the host's connection slots for the duration of a session."""
        ...

    async def before_rcpt(self, mx_ip: str) -> None:
        """Wait until one more RCPT TO may be sent to the host."""
        ...


class LocalPoliteness:
    """In-process limits: a semaphore and a spacing of RCPTs per MX host."""

    def __init__(self, *, max_connections: int, rcpt_per_second: float) -> None:
        self.max_connections = max_connections
        self.interval = rcpt_interval(rcpt_per_second)
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(max_connections)
        )
        self._active: dict[str, int] = defaultdict(int)
        self._next_rcpt: dict[str, float] = defaultdict(float)
        self._lock = asyncio.Lock()

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

    async def before_rcpt(self, mx_ip: str) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_rcpt[mx_ip])
            self._next_rcpt[mx_ip] = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
