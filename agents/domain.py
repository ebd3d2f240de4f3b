"""Domain stage: verify addresses (batched per domain) and decide verdict or retry.

A temporary outcome (greylisting, 4xx, timeouts, DNS errors) goes to the retry tier of its
attempt with a due time (``MAILSIFT_RETRY_DELAYS``); after the last tier, the verdict is
final (``unknown`` with the last reason).
"""

from __future__ import annotations

import time

from agents.batching import KeyedBatcher
from agents.verdicts import verdict_event
from checks.engine import syntax_result
from checks.model import AddressProblem, ParsedAddress, VerificationResult
from schemas import AddressTask, verdict_key
from streams.services import Services

__all__ = ["DomainHandler"]


class DomainHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        settings = services.settings
        # addresses of one domain arriving together share DNS, catch-all probe and sessions
        self.batcher: KeyedBatcher[ParsedAddress, VerificationResult] = KeyedBatcher(
            services.engine.verify_domain, window=settings.domain_batch_window,
            max_batch=settings.domain_batch_size,
            # one batch per domain at a time: later addresses wait for the running session
            # and then reuse its cached catch-all result instead of probing again
            serial_per_key=True)

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        task = AddressTask.decode(value)
        parsed = self.s.engine.parse(task.email)
        if isinstance(parsed, AddressProblem):  # cannot happen for intake's tasks
            result = syntax_result(parsed)
        else:
            result = await self.batcher.submit(parsed.ascii_domain, parsed)
        delays = self.s.settings.retry_delays
        tier = task.attempt - 1
        if result.temporary and tier < len(delays):
            retry = AddressTask(**{**task.asdict(), "attempt": task.attempt + 1,
                                   "due_at": time.time() + delays[tier],
                                   "last_reason": result.reason.value})
            await self.s.publisher.publish(self.s.topics.retries[tier], task.domain.encode(),
                                           retry.dumps())
            return
        verdict = verdict_event(task, result, dedupe_key=task.dedupe_key,
                                attempt=task.attempt, source=task.source)
        await self.s.publisher.publish(self.s.topics.verdicts,
                                       verdict_key(task.job_id, task.dedupe_key),
                                       verdict.dumps())
