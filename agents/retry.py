"""Retry stage: hold each task of a ``retries.N`` tier until it is due, then re-inject it.

Every task of a tier waits the same delay, so a tier's partition is in due-time order and
the stage simply sleeps until the head is due: no polling, no busy-waiting.
"""

from __future__ import annotations

import asyncio
import time

from schemas import AddressTask
from streams.services import Services

__all__ = ["RetryHandler"]


class RetryHandler:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        task = AddressTask.decode(value)
        if task.due_at is not None:
            delay = task.due_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        again = AddressTask(**{**task.asdict(), "due_at": None})
        await self.s.publisher.publish(self.s.topics.by_domain, task.domain.encode(),
                                       again.dumps())
