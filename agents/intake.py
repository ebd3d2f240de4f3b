"""Intake: normalize, check syntax and policy, dedupe within the job, fan out by domain.

An input that is not an address gets its (final) syntax verdict at once. A repeat of an
address already in the job is announced as a ``duplicate`` job event (it shares the first
one's verdict). Every other address goes to ``by-domain``, keyed by its ASCII domain.
"""

from __future__ import annotations

from agents.batching import KeyedBatcher
from agents.verdicts import verdict_event
from checks.engine import syntax_result
from checks.model import AddressProblem
from schemas import AddressTask, JobEvent, Submission, verdict_key
from streams.jobstore import job_key
from streams.services import Services
from streams.stage import retry_transient

__all__ = ["IntakeHandler"]


class IntakeHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        # Claims of one partition are made in offset order, so the first submission of a
        # repeated address is the one that wins: events are handled concurrently, but each
        # handler queues its claim before its first await, a batch keeps that order and a
        # partition's batches run one at a time. One Redis script claims a whole batch.
        self.claims: KeyedBatcher[tuple[str, str, str], bool] = KeyedBatcher(
            self._claim, window=0.02, max_batch=1000, serial_per_key=True)

    async def _claim(self, batch: list[tuple[str, str, str]]) -> list[bool]:
        """``(job key, dedupe key, source)`` items, all of one job run. An outage is waited
        out here, so the partition's later claims stay behind this batch."""
        claims = [(d, src) for _, d, src in batch]
        claimed: list[bool] = await retry_transient(
            "intake claims", lambda: self.s.jobs.claim_many(batch[0][0], claims))
        return claimed

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
        first = await self.claims.submit((topic, partition, jkey), (jkey, dedupe_key, source))
        if not first:
            event = JobEvent.create(sub.job_id, "duplicate", source=source,
                                    replay_id=sub.replay_id)
            await publish(topics.jobs, job_id_key, event.dumps())
            return
        if isinstance(parsed, AddressProblem):
            verdict = verdict_event(sub, syntax_result(parsed), dedupe_key=dedupe_key,
                                    attempt=1, source=source)
            await publish(topics.verdicts, verdict_key(sub.job_id, dedupe_key), verdict.dumps())
            return
        task = AddressTask(
            job_id=sub.job_id, email=sub.email, domain=parsed.ascii_domain,
            dedupe_key=dedupe_key, source=source, attempt=1, request_id=sub.request_id,
            metadata=sub.metadata, submitted_at=sub.submitted_at, replay_id=sub.replay_id,
        )
        await publish(topics.by_domain, parsed.ascii_domain.encode(), task.dumps())
