"""Progress stage: count final verdicts and duplicates per job; announce completion.

Consumes ``verdicts`` and ``jobs`` (both keyed by job id). A job is complete when its
``created`` event said how many submissions it has and every one is accounted for: a unique
address with a final verdict, or a duplicate. The ``completed`` event carries the counts by
verdict; it is sent at least once (consumers should treat a repeat as the same event).
"""

from __future__ import annotations

from schemas import JobEvent, VerdictEvent
from streams.jobstore import job_key
from streams.services import Services

__all__ = ["ProgressHandler"]


class ProgressHandler:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        jobs = self.s.jobs
        if topic == self.s.topics.verdicts:
            verdict = VerdictEvent.decode(value)
            job_id, replay_id = verdict.job_id, verdict.replay_id
            await jobs.record_final(job_key(job_id, replay_id), verdict.dedupe_key,
                                    verdict.verdict)
        else:
            event = JobEvent.decode(value)
            job_id, replay_id = event.job_id, event.replay_id
            jkey = job_key(job_id, replay_id)
            if event.kind == "created" and event.total is not None:
                await jobs.set_total(jkey, event.total)
            elif event.kind == "duplicate" and event.source:
                await jobs.record_duplicate(jkey, event.source)
            else:
                return
        jkey = job_key(job_id, replay_id)
        progress = await jobs.progress(jkey)
        if progress.is_complete and not progress.completed:
            done = JobEvent.create(job_id, "completed", total=progress.total,
                                   counts=progress.by_verdict, replay_id=replay_id)
            await self.s.publisher.publish(self.s.topics.jobs, job_id.encode(), done.dumps())
            await jobs.mark_completed(jkey)
