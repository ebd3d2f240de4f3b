"""Daily probe budgets: how many RCPT probes a domain, and an MX host, get from us per UTC
day (``MAILSIFT_DOMAIN_DAILY_PROBES``, ``MAILSIFT_MX_DAILY_PROBES``).

The engine asks :class:`ProbeBudget` before every SMTP session, for every distinct
recipient it is about to ask (the catch-all probe included), and gives back afterwards
what no server answered (no connection, a session cut short). What does not fit in both
budgets is not asked: those addresses get reason ``probe_budget`` (temporary), and the
pipeline holds them until the next day or, when their job asked not to wait, gives them
that verdict. A recipient the prober asks again within its session (after a reconnect, or
a ``452`` too-many-recipients) counts once.

The MX host of a domain is its most preferred MX host by name (the one the probe asks
first), so domains that share a provider's MX share its budget.

:class:`DailyProbeBudget` keeps the arithmetic here; the counters come through the small
:class:`DailyCounter` port (:class:`MemoryDailyCounter` in process,
``sinks.redis_daily.DailyAllowance`` shared by every worker).

>>> import asyncio
>>> budget = DailyProbeBudget(MemoryDailyCounter(), domain_limit=3, mx_limit=4)
>>> [asyncio.run(budget.take("a.test", "mx.test", 2)).granted for _ in range(2)]
[2, 1]
>>> grant = asyncio.run(budget.take("b.test", "mx.test", 5))
>>> grant.granted, grant.exhausted
(1, 'MX host mx.test')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ProbeBudget", "BudgetGrant", "DailyCounter", "DailyProbeBudget",
           "MemoryDailyCounter", "next_budget_day"]


@dataclass(frozen=True)
class BudgetGrant:
    """How many of the probes asked for may be made; when fewer, whose budget ran out
    (``"domain example.com"`` or ``"MX host mx.example.com"``) and its daily limit."""

    granted: int
    exhausted: str | None = None
    limit: int = 0


class ProbeBudget(Protocol):
    async def take(self, domain: str, mx_host: str, n: int) -> BudgetGrant:
        """Take up to ``n`` probes of today's budgets of ``domain`` and ``mx_host``."""
        ...

    async def give_back(self, domain: str, mx_host: str, n: int) -> None:
        """Return ``n`` probes taken today that were not made after all."""
        ...


class DailyCounter(Protocol):
    """Per-name counters of the current UTC day."""

    async def take(self, name: str, n: int, limit: int, *, partial: bool = False) -> Any:
        """Count up to ``n`` (all or nothing unless ``partial``) without passing ``limit``;
        the answer's ``granted`` says how many."""
        ...

    async def give_back(self, name: str, n: int) -> None: ...


def next_budget_day(now: float | None = None) -> float:
    """When the next UTC day starts (epoch seconds): the budgets are whole again.

    >>> next_budget_day(86_400 * 3 + 5)
    345600.0
    """
    now = time.time() if now is None else now
    return float((int(now) // 86_400 + 1) * 86_400)


class DailyProbeBudget:
    """:class:`ProbeBudget` over a :class:`DailyCounter`; a limit of 0 is no budget."""

    def __init__(self, counter: DailyCounter, *, domain_limit: int, mx_limit: int) -> None:
        self.counter = counter
        self.domain_limit = domain_limit
        self.mx_limit = mx_limit

    async def take(self, domain: str, mx_host: str, n: int) -> BudgetGrant:
        granted, exhausted, limit = n, None, 0
        if self.domain_limit and n:
            taken = await self.counter.take(f"probes:domain:{domain}", n, self.domain_limit,
                                            partial=True)
            if taken.granted < granted:
                granted, exhausted, limit = taken.granted, f"domain {domain}", self.domain_limit
        if self.mx_limit and granted:
            taken = await self.counter.take(f"probes:mx:{mx_host}", granted, self.mx_limit,
                                            partial=True)
            if taken.granted < granted:
                if self.domain_limit:  # what the MX host does not allow stays the domain's
                    await self.counter.give_back(f"probes:domain:{domain}",
                                                 granted - taken.granted)
                granted, exhausted, limit = taken.granted, f"MX host {mx_host}", self.mx_limit
        return BudgetGrant(granted, exhausted, limit)

    async def give_back(self, domain: str, mx_host: str, n: int) -> None:
        if n <= 0:
            return
        if self.domain_limit:
            await self.counter.give_back(f"probes:domain:{domain}", n)
        if self.mx_limit:
            await self.counter.give_back(f"probes:mx:{mx_host}", n)


@dataclass
class _Taken:
    granted: int


class MemoryDailyCounter:
    """:class:`DailyCounter` in process (one worker, tests)."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, int], int] = {}

    async def take(self, name: str, n: int, limit: int, *, partial: bool = False) -> _Taken:
        key = (name, int(time.time()) // 86_400)
        used = self._used.get(key, 0)
        grant = n if used + n <= limit else (max(0, limit - used) if partial else 0)
        self._used[key] = used + grant
        return _Taken(grant)

    async def give_back(self, name: str, n: int) -> None:
        key = (name, int(time.time()) // 86_400)
        self._used[key] = max(0, self._used.get(key, 0) - n)
