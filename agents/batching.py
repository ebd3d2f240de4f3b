"""Gather items that arrive close together into one call of a batch function.

:class:`KeyedBatcher` collects items per key; a key's batch runs when ``max_batch`` items
are waiting or ``window`` seconds after its first item, whichever comes first. Batches of
different keys run concurrently (at most ``concurrency`` at once), so one slow key never
stalls the others. Each :meth:`KeyedBatcher.submit` returns its own item's result.

The domain stage batches addresses per domain (one DNS resolution, one catch-all probe and
shared SMTP sessions per batch); the sinks batch rows per write.

>>> import asyncio
>>> async def demo() -> list[str]:
...     calls: list[list[int]] = []
...     async def double(items: list[int]) -> list[str]:
...         calls.append(items)
...         return [str(2 * i) for i in items]
...     b = KeyedBatcher(double, window=0.01, max_batch=10)
...     out = await asyncio.gather(*(b.submit("k", i) for i in range(3)))
...     return out + [f"{len(calls)} call"]
>>> asyncio.run(demo())
['0', '2', '4', '1 call']
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["KeyedBatcher"]

T = TypeVar("T")
R = TypeVar("R")


class KeyedBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, window: float,
                 max_batch: int, concurrency: int = 200, serial_per_key: bool = False) -> None:
        self.run = run
        self.window = window
        self.max_batch = max_batch
        #: one batch per key at a time: items arriving meanwhile form the next batch
        self.serial_per_key = serial_per_key
        self._running: set[Hashable] = set()
        self._slots = asyncio.Semaphore(concurrency)
        # per key: groups of items (one future for each group), and how many items they hold
        self._pending: dict[Hashable, list[tuple[list[T], asyncio.Future[list[R]]]]] = {}
        self._sizes: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, item: T) -> R:
        """Add one item; returns its result."""
        return (await self.enqueue(key, [item]))[0]

    def enqueue(self, key: Hashable, items: list[T]) -> asyncio.Future[list[R]]:
        """Add a group of items (kept together in one batch, even past ``max_batch``); the
        future gets their results in order. No task per group: await many with gather."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[R]] = loop.create_future()
        if not items:
            future.set_result([])
            return future
        self._pending.setdefault(key, []).append((items, future))
        size = self._sizes[key] = self._sizes.get(key, 0) + len(items)
        if size >= self.max_batch:
            self._flush(key)
        elif key not in self._timers:
            self._timers[key] = loop.call_later(self.window, self._flush, key)
        return future

    def _flush(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if self.serial_per_key and key in self._running:
            return  # flushed when the running batch of this key finishes
        groups = self._pending.pop(key, [])
        batch: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        size = 0
        while groups and (not batch or size + len(groups[0][0]) <= self.max_batch):
            group = groups.pop(0)
            batch.append(group)
            size += len(group[0])
        left = self._sizes.pop(key, 0) - size
        if groups:
            self._pending[key] = groups
            self._sizes[key] = left
        if batch:
            self._running.add(key)
            task = asyncio.create_task(self._run(key, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable,
                   batch: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        try:
            await self._run_batch(batch)
        finally:
            self._running.discard(key)
            if self._pending.get(key) and (self.serial_per_key or
                                           self._sizes.get(key, 0) >= self.max_batch):
                self._flush(key)

    async def _run_batch(self, batch: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        items = [item for group, _ in batch for item in group]
        try:
            async with self._slots:
                results = list(await self.run(items))
            if len(results) != len(items):
                raise RuntimeError(f"batch of {len(items)} got {len(results)} results")
        except Exception as exc:  # hand the failure to every waiting submitter
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:  # cancelled: no submitter may wait forever
            for _, fut in batch:
                fut.cancel()
            raise
        start = 0
        for group, fut in batch:
            if not fut.done():
                fut.set_result(results[start:start + len(group)])
            start += len(group)
