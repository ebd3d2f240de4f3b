"""Leaving erased jobs alone: every stage drops what it still holds of a job erased on
request (``mailsift.erasure``) before it probes, counts or forwards anything of it.

The job store says which jobs are erased (``JobStore.erased``, one round trip). A worker
remembers the answer: "erased" for good, "not erased" for :data:`FRESH_SECONDS`, so a busy
stage asks about a running job about once a second, not once per batch (its batches are
small and many). A stage therefore drops an erased job's events at most a second after
the erasure; what it wrote in that second is erased again by the job's ``deleted`` event
(the progress stage, the Postgres sink) and refused by Postgres's tombstone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from agents.outage import retry_transient
from agents.ports import Services

__all__ = ["without_erased", "FRESH_SECONDS"]

T = TypeVar("T")
#: how long a worker takes "not erased" for an answer
FRESH_SECONDS = 1.0
#: job ids remembered at most (the oldest answers are dropped first)
_MAX_REMEMBERED = 50_000


async def without_erased(services: Services, stage: str, items: Iterable[T],
                         job_of: Callable[[T], str]) -> list[T]:
    """``items`` but those of erased jobs, in order.

    >>> import asyncio
    >>> from sinks.memory_jobs import MemoryJobStore
    >>> store = MemoryJobStore()
    >>> _ = asyncio.run(store.erase("gone"))
    >>> services = type("S", (), {"jobs": store, "erased_seen": {}})()
    >>> asyncio.run(without_erased(services, "intake", ["kept", "gone", "kept"], str))
    ['kept', 'kept']
    """
    items = list(items)
    if not items:
        return items
    seen = services.erased_seen
    now = time.monotonic()
    jobs = {job_of(item) for item in items}
    ask = set()
    gone = set()
    for job in jobs:
        known = seen.get(job)
        if known is None or (not known[0] and now - known[1] > FRESH_SECONDS):
            ask.add(job)
        elif known[0]:
            gone.add(job)
    if ask:
        erased: set[str] = await retry_transient(
            f"{stage} erased jobs", functools.partial(services.jobs.erased, ask))
        gone |= erased
        if len(seen) + len(ask) > _MAX_REMEMBERED:
            for old in list(seen)[:len(ask) + _MAX_REMEMBERED // 10]:
                del seen[old]
        for job in ask:
            seen.pop(job, None)  # re-inserted: the dict's order is the answers' age
            seen[job] = (job in erased, now)
    if not gone:
        return items
    return [item for item in items if job_of(item) not in gone]
