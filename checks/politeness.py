"""Politeness toward mail servers: per-MX connection slots and RCPT rate.

:class:`Politeness` is the interface the probe uses; :class:`LocalPoliteness` enforces
the limits inside one process. A Redis implementation (in ``sinks``) makes them global
across workers, which matters because many domains share the same MX hosts.

RCPT permits of a host are evenly spaced (:class:`RcptPacing`): one every
``(RATE_MARGIN + horizon) / rate`` seconds. They are reserved in bulk
(:meth:`Politeness.reserve_rcpts`, one Redis round trip), and permits less than
``horizon`` apart share the send time of the first of them, so a pipelined group
(RFC 2920) goes in one write. The spacing pays for that early start, so no rolling
second ever holds more than ``rate`` permits, with ``RATE_MARGIN`` left for the jitter of
arrival times at the server. At low rates (a permit every 50 ms or more) nothing is
grouped: lock-step, the budget used to 97 %.

Of the 30 ms that ``RATE_MARGIN`` leaves per second, a send may use ``LATE_LIMIT`` behind
its permit at the ungrouped rates; a permit that could be later than that is not used
(:meth:`RcptPermits.late`: the prober reserves new ones). So every send lies between its
place on the grid and ``LATE_LIMIT`` after it, whichever worker or session makes it, and
any ``rate + 1`` consecutive permits span more than a second at the server. This is what
keeps a late send of one worker from bunching with the next permits of another, which go
on time. A permit given up that way goes back to the grid (``unused`` of
:meth:`Politeness.reserve_rcpts`, :meth:`RcptPacing.take`): its new one takes its part
from now and the permits not yet reserved move by as much, instead of the host losing a
whole interval. At grouped rates the prober spaces each process's own sends instead (see
:meth:`checks.probe.SmtpProber._pace`).

>>> import asyncio
>>> async def demo() -> tuple[int, list[float]]:
...     p = LocalPoliteness(max_connections=2, rcpt_per_second=2)
...     async with p.connection("192.0.2.1"):
...         permits = await p.reserve_rcpts("192.0.2.1", 3)
...         return p.active("192.0.2.1"), [round(d - permits.due[0], 3) for d in permits.due]
>>> asyncio.run(demo())
(1, [0.0, 0.515, 1.03])
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Politeness", "WatchedLease", "LocalPoliteness", "HostLimits", "HostLimitTable",
           "RATE_MARGIN", "GROUP_HORIZON", "LATE_LIMIT", "RcptPacing",
           "RcptPermits", "GridSpan", "SharedClock"]

#: Permits are spaced 3 % wider than ``1 / rate``: the permits and our sends are exact,
#: but the moments the commands reach the server jitter, and without slack a server
#: counting any rolling second would now and then see one RCPT more than the limit (at
#: 5 RCPT/s, 3 % leaves 30 ms of jitter per second).
RATE_MARGIN = 1.03
#: permits at most this far apart go out together (pipelined) at high rates
GROUP_HORIZON = 0.05
#: a permit is not used when its send could be more than this many seconds behind it (of
#: the 30 ms of ``RATE_MARGIN``, the other 20 ms are for the jitter of the way to the
#: server and of its own reading)
LATE_LIMIT = 0.01


@dataclass(frozen=True)
class RcptPacing:
    """The permit grid of one rate: ``interval`` between permits, ``horizon`` of a group.

    >>> RcptPacing.for_rate(5)
    RcptPacing(interval=0.206, horizon=0.0)
    >>> p = RcptPacing.for_rate(200); round(p.interval, 5), p.horizon, p.group_size
    (0.0054, 0.05, 10)
    """

    interval: float
    horizon: float

    @classmethod
    def for_rate(cls, rcpt_per_second: float) -> RcptPacing:
        horizon = GROUP_HORIZON if RATE_MARGIN / rcpt_per_second < GROUP_HORIZON else 0.0
        return cls(round((RATE_MARGIN + horizon) / rcpt_per_second, 9), horizon)

    @property
    def group_size(self) -> int:
        """Most permits one pipelined group can get."""
        return max(1, math.floor(self.horizon / self.interval) + 1) if self.horizon else 1

    def take(self, next_free: float, now: float, count: int,
             unused: GridSpan | None = None) -> tuple[float, float]:
        """Where ``count`` new permits start and the grid's new next free permit, after
        taking back ``unused`` (the model of the Redis script, on one clock).

        * ``unused`` still ends the grid (nobody reserved after it): it goes back, and
          the new permits start from its place (or ``now``, if that is later).
        * One unused permit (it came too late) that some, but fewer than a second of
          permits were reserved after: a single new permit takes its part from ``now``,
          and the grid from ``next_free`` on moves by as much (``shift``). Any ``m + 1``
          consecutive permits then still span ``m`` intervals, for the ``m`` that make a
          second.
        * Else it stays lost, and the new permits go after the others. (A ``next_free``
          before ``unused.end`` is a grid that was forgotten, as the Redis key expires a
          second after its last permit: it starts again from ``now``.)

        >>> p = RcptPacing(interval=0.25, horizon=0.0)
        >>> p.take(10.25, 10.125, 1, GridSpan(10.0, 10.25))  # went back: starts now
        (10.125, 10.375)
        >>> p.take(10.75, 10.125, 1, GridSpan(10.0, 10.25))  # moved: the grid by 0.125
        (10.125, 10.875)
        >>> p.take(11.25, 10.125, 1, GridSpan(10.0, 10.25))  # a second after it: lost
        (11.25, 11.5)
        >>> p.take(0.0, 11.5, 1, GridSpan(10.0, 10.25))  # the grid was forgotten: afresh
        (11.5, 11.75)
        """
        if unused is not None:
            if next_free == unused.end:
                next_free = unused.start
            elif (count == 1 and unused.end < next_free <= unused.start + self.window
                  and math.isclose(unused.end - unused.start, self.interval,
                                   rel_tol=1e-9, abs_tol=1e-9)):
                start = max(now, unused.start)
                return start, next_free + (start - unused.start)
        start = max(now, next_free)
        return start, start + count * self.interval

    @property
    def window(self) -> float:
        """The span of the fewest consecutive intervals that make a second or more."""
        return math.ceil(round(1.0 / self.interval, 9)) * self.interval

    def slots(self, next_free: float, now: float, count: int) -> tuple[list[float], float]:
        """Send times of ``count`` permits from ``next_free``, and the new ``next_free``.

        >>> RcptPacing(interval=1.0, horizon=1.5).slots(0.0, 10.0, 4)
        ([10.0, 10.0, 12.0, 12.0], 14.0)
        """
        start = max(now, next_free)
        sends: list[float] = []
        group = start
        for i in range(count):
            slot = start + i * self.interval
            if slot - group > self.horizon:
                group = slot
            sends.append(group)
        return sends, start + count * self.interval


@dataclass(frozen=True)
class GridSpan:
    """Permits of a host's grid from ``start`` to ``end``, on the grid's own clock and in
    its units (seconds of ``time.monotonic()`` in-process, microseconds of Redis ``TIME``
    in Redis): what a reservation gives back when it did not use them."""

    start: float
    end: float


@dataclass(frozen=True)
class RcptPermits:
    """RCPT permits reserved at once, as :meth:`Politeness.reserve_rcpts` gives them.

    ``due`` holds, for each, the ``time.monotonic()`` moment it may be used (never before
    its place on the grid; equal for the permits of one pipelined group). ``unsure`` is
    how much earlier than ``due`` its place may really be: the grid's clock was read
    somewhere within the round trip to it, and ``due`` counts from the end of that trip.
    ``first`` and ``interval`` say where the permits lie on the grid's own clock (0 for
    permits of no grid), for :meth:`unused`.

    >>> permits = RcptPermits((10.0, 10.5), unsure=0.002, first=700, interval=500)
    >>> permits.late(0, now=10.006), permits.late(0, now=10.009), permits.late(1, now=10.1)
    (False, True, False)
    >>> permits.unused(1)
    GridSpan(start=1200, end=1700)
    """

    due: tuple[float, ...]
    unsure: float = 0.0
    first: float = 0.0
    interval: float = 0.0

    def late(self, index: int, now: float) -> bool:
        """Whether a send of permit ``index`` at ``now`` could be more than
        ``LATE_LIMIT`` behind its place on the grid."""
        return now + self.unsure - self.due[index] > LATE_LIMIT

    def unused(self, index: int) -> GridSpan | None:
        """The grid's part that permits ``index`` and after hold (None: no grid)."""
        if not self.interval:
            return None
        return GridSpan(self.first + index * self.interval,
                        self.first + len(self.due) * self.interval)


class SharedClock:
    """Where the moments of a shared clock (Redis ``TIME``) fall on this process's
    ``time.monotonic()``, from the round trips that read it.

    A round trip sent at ``sent`` and answered at ``answered`` read the shared clock at
    ``shared`` somewhere in between, so ``offset = shared - local`` lies in
    ``[shared - answered, shared - sent]``. The bounds of every round trip are kept
    intersected (widened by ``drift`` per second, as NTP may slew a wall clock), so a
    slow answer, read late by a busy event loop, no longer blurs where a permit lies:
    the quickest recent round trip says it.

    >>> clock = SharedClock()
    >>> clock.observe(1000.0, sent=5.0, answered=5.03)  # a slow answer: 30 ms unsure
    (994.97, 995.0)
    >>> lo, hi = clock.observe(1000.1, sent=5.1, answered=5.101)
    >>> round(lo, 6), round(hi, 6)
    (994.999, 995.0)
    """

    def __init__(self, drift: float = 0.0005) -> None:
        self.drift = drift
        self._bounds: tuple[float, float, float] | None = None  # lo, hi, at (local)

    def observe(self, shared: float, *, sent: float, answered: float) -> tuple[float, float]:
        lo, hi = shared - answered, shared - sent
        if self._bounds is not None:
            blo, bhi, at = self._bounds
            widen = max(0.0, answered - at) * self.drift
            nlo, nhi = max(lo, blo - widen), min(hi, bhi + widen)
            if nlo <= nhi:  # else the shared clock was stepped: start again
                lo, hi = nlo, nhi
        self._bounds = (lo, hi, answered)
        return lo, hi


@dataclass(frozen=True)
class HostLimits:
    """One MX host's limits: connection slots, and the RCPT grid (None: RCPT unlimited).

    >>> HostLimits.of(2, 5).pacing
    RcptPacing(interval=0.206, horizon=0.0)
    """

    max_connections: int
    pacing: RcptPacing | None

    @classmethod
    def of(cls, max_connections: int, rcpt_per_second: float) -> HostLimits:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        pacing = RcptPacing.for_rate(rcpt_per_second) if rcpt_per_second > 0 else None
        return cls(max_connections, pacing)


class HostLimitTable:
    """The limits of every MX host: one default, and the hosts that have their own (the
    engine sets those from the host's provider, ``MAILSIFT_PROVIDER_LIMITS``).

    Every worker derives a host's limits the same way (its MX names and the shared
    settings), so a limit kept in Redis is still one limit for all workers.

    >>> table = HostLimitTable(HostLimits.of(2, 5))
    >>> table.set("192.0.2.1", HostLimits.of(5, 20))
    >>> table.get("192.0.2.1").max_connections, table.get("192.0.2.9").max_connections
    (5, 2)
    """

    def __init__(self, default: HostLimits) -> None:
        self.default = default
        self._by_ip: dict[str, HostLimits] = {}

    def get(self, mx_ip: str) -> HostLimits:
        return self._by_ip.get(mx_ip, self.default)

    def own(self, mx_ip: str) -> HostLimits | None:
        """The host's own limits, if it has any."""
        return self._by_ip.get(mx_ip)

    def set(self, mx_ip: str, limits: HostLimits) -> None:
        self._by_ip[mx_ip] = limits


class Politeness(Protocol):
    """Limits per MX host (keyed by the IP address we connect to), from ``limits``."""

    limits: HostLimitTable

    def connection(self, mx_ip: str) -> AbstractAsyncContextManager[None]:
        """Hold one of the host's connection slots for the duration of a session."""
        ...

    async def reserve_rcpts(self, mx_ip: str, count: int, *,
                            unused: GridSpan | None = None) -> RcptPermits:
        """Reserve ``count`` RCPT permits of the host at once: when each may be used.

        ``unused`` is the part of an earlier reservation of the host that was not used
        (:meth:`RcptPermits.unused`); the grid takes it back as :meth:`RcptPacing.take`
        says (still the grid's end: the new permits start from it; one late permit with
        less than a second reserved after it: re-placed at now; else it stays lost).
        """
        ...

    def rcpt_group_size(self, mx_ip: str) -> int:
        """How many permits of the host are worth reserving at once (one pipelined group)."""
        ...

    def rcpt_interval(self, mx_ip: str) -> float:
        """Seconds of the host's permit grid per RCPT (0 when RCPT is not limited)."""
        ...

    def sharers(self, mx_ip: str) -> int:
        """How many workers have work for the host lately, this one included (1: only
        this one, or not known): the pool keeps to its share of the host's slots."""
        ...


@runtime_checkable
class WatchedLease(Protocol):
    """A connection slot that can vanish while it is held (a shared store lost it, or
    could not renew it in time): what :meth:`Politeness.connection` may return.

    ``lost`` says so; ``watch(on_lost)`` has ``on_lost`` called at that moment (at once if
    it already happened), so the session holding the slot can be dropped before another
    worker is given the slot.
    """

    lost: bool

    def watch(self, on_lost: Callable[[], None]) -> None: ...


class LocalPoliteness:
    """In-process limits: a semaphore and a spacing of RCPTs per MX host."""

    def __init__(self, *, max_connections: int, rcpt_per_second: float) -> None:
        self.limits = HostLimitTable(HostLimits.of(max_connections, rcpt_per_second))
        self._next_free: dict[str, float] = defaultdict(float)
        self._active: dict[str, int] = defaultdict(int)
        #: sessions waiting for a slot of a host, first come first served
        self._waiting: dict[str, deque[asyncio.Future[None]]] = defaultdict(deque)

    def active(self, mx_ip: str) -> int:
        return self._active.get(mx_ip, 0)

    def rcpt_group_size(self, mx_ip: str) -> int:
        pacing = self.limits.get(mx_ip).pacing
        return pacing.group_size if pacing is not None else 100

    def sharers(self, mx_ip: str) -> int:
        return 1  # one process

    def rcpt_interval(self, mx_ip: str) -> float:
        pacing = self.limits.get(mx_ip).pacing
        return pacing.interval if pacing is not None else 0.0

    def _has_room(self, mx_ip: str) -> bool:
        # the host's limit as it is now: a provider's own limit may be set after the
        # host was first used (its MX names are learned with a domain)
        return self._active.get(mx_ip, 0) < self.limits.get(mx_ip).max_connections

    def _wake_next(self, mx_ip: str) -> None:
        waiting = self._waiting.get(mx_ip)
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._waiting.pop(mx_ip, None)

    @asynccontextmanager
    async def _hold(self, mx_ip: str) -> AsyncIterator[None]:
        while not self._has_room(mx_ip) or self._waiting.get(mx_ip):
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[mx_ip].append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next(mx_ip)  # woken, then cancelled: the turn goes on
                else:
                    waiting = self._waiting.get(mx_ip)
                    if waiting is not None and waiter in waiting:
                        waiting.remove(waiter)
                        if not waiting:
                            del self._waiting[mx_ip]
                raise
            if self._has_room(mx_ip):
                break
        self._active[mx_ip] += 1
        if self._has_room(mx_ip):
            self._wake_next(mx_ip)  # a limit raised meanwhile has room for more
        try:
            yield
        finally:
            self._active[mx_ip] -= 1
            if not self._active[mx_ip]:
                del self._active[mx_ip]
            self._wake_next(mx_ip)

    def connection(self, mx_ip: str) -> AbstractAsyncContextManager[None]:
        return self._hold(mx_ip)

    async def reserve_rcpts(self, mx_ip: str, count: int, *,
                            unused: GridSpan | None = None) -> RcptPermits:
        now = time.monotonic()
        pacing = self.limits.get(mx_ip).pacing
        if pacing is None:
            return RcptPermits((now,) * count)
        first, self._next_free[mx_ip] = pacing.take(self._next_free[mx_ip], now, count,
                                                    unused)
        slots, _ = pacing.slots(first, first, count)
        return RcptPermits(tuple(slots), first=first, interval=pacing.interval)

