"""Retry stage: hold each task of a ``retries.N`` tier until it is due, then re-inject it.

Every task of a tier waits the same delay, so a tier's partition is in due-time order and
the stage simply sleeps until the head is due: no polling, no busy-waiting. The tasks of a
batch that are due together are produced together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from agents.events import decode_each
from agents.ports import Done, Outcome, RawEvent, Record, Services
from schemas import AddressTask

__all__ = ["RetryHandler"]


class RetryHandler:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(events)
        tasks = [task for _, task in decode_each(events, outcomes, AddressTask.decode)]
        tasks.sort(key=lambda t: t.due_at or 0.0)
        while tasks:
            delay = (tasks[0].due_at or 0.0) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            due = [t for t in tasks if (t.due_at or 0.0) <= now]
            tasks = tasks[len(due):]
            await self.s.publisher.publish_many([
                Record(self.s.topics.by_domain, t.domain.encode(),
                       AddressTask(**{**t.asdict(), "due_at": None}).dumps())
                for t in due])
        return outcomes
