"""Probes of domains that share their MX, asked while its sessions are busy, go as one.

A provider serves thousands of domains from the same MX hosts, and a shuffled list brings
them a few addresses at a time: each domain's probe would be its own MAIL transaction of
one or two recipients, a round trip each. The recipient's domain does not matter to the
server that takes mail for all of them (mail to two hosted domains is one SMTP
transaction from any MTA that groups by MX, as Exim's ``multi_domain`` does), so
:class:`CoalescingProber` runs the probes of one *route* (the same MX hosts with the same
addresses, in the same order) together:

* while fewer probes of the route run than its first address has sessions
  (:meth:`checks.pool.MxPool.max_connections`), a probe runs at once, on its own: no
  latency is added to an idle host;
* past that, probes wait; when one of the running ones ends, the waiting ones start as
  one probe, so a session's transactions carry full pipelined groups instead of one
  recipient each. A merged probe holds at most ``max_recipients``, and no more than the
  host's RCPT rate lets through in ``seconds`` (shared by its sessions): a merged probe
  must end well inside the session timeout. A bigger probe runs alone.

Everything else is the :class:`~checks.probe.SmtpProber`'s: the RCPT permits and the
connection limit, the transaction limit, what a refusal or a ``421`` means. Each caller
gets the replies for its own recipients; the connections the merged probe opened are
counted for the first of them. A caller that gives up waiting leaves the others' probe
running; when all of its callers gave up, it is cancelled.

>>> import asyncio
>>> from checks.model import MxHost, MxResult, MxStatus, RcptResult
>>> from checks.probe import ProbeReport
>>> class Echo:
...     calls: list[list[str]] = []
...     max_connections = staticmethod(lambda ip: 1)
...     rcpt_interval = staticmethod(lambda ip: 0.01)
...     async def probe(self, mx, recipients):
...         self.calls.append(list(recipients))
...         await asyncio.sleep(0.01)
...         return ProbeReport({r: RcptResult(None, None, None) for r in recipients}, 1)
>>> mx = MxResult(MxStatus.OK, (MxHost(10, "mx.example.test", ("192.0.2.1",)),))
>>> async def demo() -> list[list[str]]:
...     echo = Echo()
...     prober = CoalescingProber(echo, echo.max_connections, echo.rcpt_interval,
...                               seconds=30)
...     await asyncio.gather(*(prober.probe(mx, [f"u@d{i}.test"]) for i in range(4)))
...     return echo.calls
>>> asyncio.run(demo())
[['u@d0.test'], ['u@d1.test', 'u@d2.test', 'u@d3.test']]
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from checks.model import MxHost, MxResult
from checks.probe import ProbeReport

__all__ = ["Prober", "CoalescingProber"]


class Prober(Protocol):
    """What asks an MX about recipients (:class:`checks.probe.SmtpProber`)."""

    async def probe(self, mx: MxResult, recipients: Sequence[str]) -> ProbeReport: ...


@dataclass
class _Merged:
    """A merged probe once started, and how many of its callers still wait for it.

    It knows its callers by count, not by reference: a caller that referred to its batch
    (which refers to the caller) closed a reference cycle per merged probe, and left it,
    with every reply it carried, to the cyclic collector, whose pauses made RCPT permits
    late."""

    task: asyncio.Task[None]
    waiting: int


@dataclass
class _Waiting:
    recipients: list[str]
    future: asyncio.Future[ProbeReport]
    #: once started: the merged probe that carries it
    merged: _Merged | None = None


@dataclass
class _Route:
    running: int = 0
    waiting: deque[_Waiting] = field(default_factory=deque)


def _first_address(mx: MxResult) -> str | None:
    """The address a route's probes go to first (its pool limit and RCPT grid count)."""
    return next((ip for h in mx.hosts for ip in h.addresses), None)


class CoalescingProber:
    """A :class:`Prober` that merges the probes of one route while its sessions are busy
    (see the module docstring). ``slots(ip)`` is how many sessions the route's first
    address has, ``rcpt_interval(ip)`` the seconds of its RCPT grid per recipient (0:
    not limited)."""

    def __init__(self, prober: Prober, slots: Callable[[str], int],
                 rcpt_interval: Callable[[str], float], *, seconds: float,
                 max_recipients: int = 100) -> None:
        self.prober = prober
        self.slots = slots
        self.rcpt_interval = rcpt_interval
        self.seconds = seconds
        self.max_recipients = max_recipients
        self._routes: dict[tuple[MxHost, ...], _Route] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: probes run, and how many callers' probes they carried (for tests and metrics)
        self.probes = 0
        self.merged = 0

    async def probe(self, mx: MxResult, recipients: Sequence[str]) -> ProbeReport:
        first = _first_address(mx)
        if first is None or not recipients:
            return await self.prober.probe(mx, recipients)
        route = self._routes.get(mx.hosts)
        if route is None:
            route = self._routes[mx.hosts] = _Route()
        if route.running < max(1, self.slots(first)) and not route.waiting:
            route.running += 1
            self.probes += 1
            self.merged += 1
            try:
                return await self.prober.probe(mx, recipients)
            finally:
                self._done(mx, route)
        waiting = _Waiting(list(recipients), asyncio.get_running_loop().create_future())
        route.waiting.append(waiting)
        try:
            # shielded: this caller giving up must not cancel a probe that carries others
            return await asyncio.shield(waiting.future)
        finally:
            if not waiting.future.done():  # given up
                waiting.future.cancel()
                if waiting in route.waiting:  # before its probe started
                    route.waiting.remove(waiting)
                    self._forget_if_idle(mx.hosts, route)
                elif waiting.merged is not None:
                    waiting.merged.waiting -= 1
                    if not waiting.merged.waiting:
                        waiting.merged.task.cancel()  # nobody waits for that probe any more

    def _done(self, mx: MxResult, route: _Route) -> None:
        """A probe of the route ended: start the waiting ones as one."""
        route.running -= 1
        route.waiting = deque(w for w in route.waiting if not w.future.done())
        if not route.waiting:
            self._forget_if_idle(mx.hosts, route)
            return
        batch: list[_Waiting] = []
        size, most = 0, self._most(mx)
        while route.waiting and (not batch or size + len(route.waiting[0].recipients)
                                 <= most):
            waiting = route.waiting.popleft()
            batch.append(waiting)
            size += len(waiting.recipients)
        route.running += 1
        task = asyncio.get_running_loop().create_task(self._run(mx, route, batch))
        merged = _Merged(task, len(batch))
        for waiting in batch:
            waiting.merged = merged
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, mx: MxResult, route: _Route, batch: list[_Waiting]) -> None:
        self.probes += 1
        self.merged += len(batch)
        try:
            report = await self.prober.probe(
                mx, list(dict.fromkeys(r for w in batch for r in w.recipients)))
        except BaseException as exc:
            for w in batch:
                if not w.future.done():
                    if isinstance(exc, Exception):
                        w.future.set_exception(exc)
                    else:
                        w.future.cancel()
            if not isinstance(exc, Exception):
                raise
        else:
            connections = report.connections
            for w in batch:
                if not w.future.done():
                    w.future.set_result(ProbeReport(
                        {r: report.results[r] for r in w.recipients if r in report.results},
                        connections))
                    connections = 0
        finally:
            self._done(mx, route)

    def _most(self, mx: MxResult) -> int:
        """Recipients one merged probe of the route may carry.

        >>> from checks.model import MxHost, MxResult, MxStatus
        >>> mx = MxResult(MxStatus.OK, (MxHost(10, "mx.example.test", ("192.0.2.1",)),))
        >>> slow = CoalescingProber(None, lambda ip: 2, lambda ip: 0.206, seconds=30)
        >>> slow._most(mx), CoalescingProber(None, lambda ip: 2, lambda ip: 0.0054,
        ...                                   seconds=30)._most(mx)
        (72, 100)
        """
        first = _first_address(mx)
        assert first is not None  # a route has an address (see probe)
        interval = self.rcpt_interval(first) * max(1, self.slots(first))
        if interval <= 0:
            return self.max_recipients
        return max(1, min(self.max_recipients, math.floor(self.seconds / interval)))

    def _forget_if_idle(self, key: tuple[MxHost, ...], route: _Route) -> None:
        if not route.running and not route.waiting and self._routes.get(key) is route:
            del self._routes[key]
