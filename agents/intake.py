"""Intake: normalize, check syntax and policy, dedupe within the job, fan out by domain.

An input that is not an address gets its (final) syntax verdict at once. A repeat of an
address already in the job is announced as a ``duplicate`` job event (it shares the first
one's verdict). Every other address goes to ``by-domain``, keyed by its ASCII domain.
"""

from __future__ import annotations

import asyncio

from agents.verdicts import verdict_event
from checks.engine import syntax_result
from checks.model import AddressProblem
from schemas import AddressTask, JobEvent, Submission
from streams.jobstore import job_key
from streams.services import Services

__all__ = ["IntakeHandler"]


class IntakeHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        # Claims of one partition are made in offset order, so the first submission of a
        # repeated address is the one that wins (events are handled concurrently, and the
        # handler reaches this lock before its first await: asyncio locks are FIFO).
        self._claim_order: dict[tuple[str, int], asyncio.Lock] = {}

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        sub = Submission.decode(value)
        source = f"{topic}:{partition}:{offset}"
        jkey = job_key(sub.job_id, sub.replay_id)
        parsed = self.s.engine.parse(sub.email)
        dedupe_key = ("raw:" + sub.email.strip() if isinstance(parsed, AddressProblem)
                      else parsed.dedupe_key)
        topics, publish = self.s.topics, self.s.publisher.publish
        job_id_key = sub.job_id.encode()
        lock = self._claim_order.setdefault((topic, partition), asyncio.Lock())
        async with lock:
            first = await self.s.jobs.claim(jkey, dedupe_key, source)
        if not first:
            event = JobEvent.create(sub.job_id, "duplicate", source=source,
                                    replay_id=sub.replay_id)
            await publish(topics.jobs, job_id_key, event.dumps())
            return
        if isinstance(parsed, AddressProblem):
            verdict = verdict_event(sub, syntax_result(parsed), dedupe_key=dedupe_key,
                                    attempt=1, source=source)
            await publish(topics.verdicts, job_id_key, verdict.dumps())
            return
        task = AddressTask(
            job_id=sub.job_id, email=sub.email, domain=parsed.ascii_domain,
            dedupe_key=dedupe_key, source=source, attempt=1, request_id=sub.request_id,
            metadata=sub.metadata, submitted_at=sub.submitted_at, replay_id=sub.replay_id,
        )
        await publish(topics.by_domain, parsed.ascii_domain.encode(), task.dumps())
