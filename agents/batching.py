"""Gather addresses of one domain that arrive close together into one engine call.

One :meth:`DomainBatcher.check` per address; addresses of the same domain arriving within
``window`` seconds (or ``max_batch`` of them) are verified together, sharing DNS lookups,
the catch-all probe and SMTP sessions. Domains run concurrently (at most ``concurrency``
batches at once), so a slow or tarpitting domain never stalls the others.
"""

from __future__ import annotations

import asyncio

from checks import Engine
from checks.model import ParsedAddress, VerificationResult

__all__ = ["DomainBatcher"]


class DomainBatcher:
    def __init__(self, engine: Engine, *, window: float, max_batch: int,
                 concurrency: int = 200) -> None:
        self.engine = engine
        self.window = window
        self.max_batch = max_batch
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[str, list[tuple[ParsedAddress,
                                            asyncio.Future[VerificationResult]]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def check(self, address: ParsedAddress) -> VerificationResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[VerificationResult] = loop.create_future()
        domain = address.ascii_domain
        batch = self._pending.setdefault(domain, [])
        batch.append((address, future))
        if len(batch) >= self.max_batch:
            self._flush(domain)
        elif domain not in self._timers:
            self._timers[domain] = loop.call_later(self.window, self._flush, domain)
        return await future

    def _flush(self, domain: str) -> None:
        timer = self._timers.pop(domain, None)
        if timer is not None:
            timer.cancel()
        batch = self._pending.pop(domain, [])
        if batch:
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[ParsedAddress,
                                           asyncio.Future[VerificationResult]]]) -> None:
        try:
            async with self._slots:
                results = await self.engine.verify_domain([a for a, _ in batch])
        except Exception as exc:  # hand the failure to every waiting address
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
