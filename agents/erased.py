"""Leaving erased jobs alone: every stage drops what it still holds of a job erased on
request (``mailsift.erasure``) before it probes, counts or forwards anything of it.

One job-store round trip per batch (``JobStore.erased``), waited out while the store is down.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TypeVar

from agents.outage import retry_transient
from agents.ports import Services

__all__ = ["without_erased"]

T = TypeVar("T")


async def without_erased(services: Services, stage: str, items: Iterable[T],
                         job_of: Callable[[T], str]) -> list[T]:
    """``items`` but those of erased jobs, in order.

    >>> import asyncio
    >>> from sinks.memory_jobs import MemoryJobStore
    >>> store = MemoryJobStore()
    >>> _ = asyncio.run(store.erase("gone"))
    >>> services = type("S", (), {"jobs": store})()
    >>> asyncio.run(without_erased(services, "intake", ["kept", "gone", "kept"], str))
    ['kept', 'kept']
    """
    items = list(items)
    ids = {job_of(item) for item in items}
    if not ids:
        return items
    erased: set[str] = await retry_transient(
        f"{stage} erased jobs", functools.partial(services.jobs.erased, ids))
    if not erased:
        return items
    return [item for item in items if job_of(item) not in erased]
