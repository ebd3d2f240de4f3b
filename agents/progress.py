"""Progress stage: count final verdicts and duplicates per job; announce completion.

Consumes ``verdicts`` and ``jobs`` (both keyed by job id). A job is complete when its
``created`` event said how many submissions it has and every one is accounted for: a unique
address with a final verdict, or a duplicate. The ``completed`` event carries the counts by
verdict; it is sent at least once (consumers should treat a repeat as the same event).
"""

from __future__ import annotations

from agents.batching import KeyedBatcher
from schemas import JobEvent, VerdictEvent
from streams.jobstore import JobProgress, job_key
from streams.services import Services

__all__ = ["ProgressHandler"]


class ProgressHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        # the verdicts of one job that arrive together are counted in one Redis script,
        # which also answers the job's progress (one round trip per batch, not two per
        # verdict); one batch per job at a time, so a completion is seen after its counts
        self.finals: KeyedBatcher[VerdictEvent, None] = KeyedBatcher(
            self._record, window=0.05, max_batch=1000, serial_per_key=True)

    async def _record(self, batch: list[VerdictEvent]) -> list[None]:
        first = batch[0]
        jkey = job_key(first.job_id, first.replay_id)
        progress = await self.s.jobs.record_finals(
            jkey, [(v.dedupe_key, v.verdict) for v in batch])
        await self._announce(first.job_id, first.replay_id, jkey, progress)
        return [None] * len(batch)

    async def _announce(self, job_id: str, replay_id: str | None, jkey: str,
                        progress: JobProgress) -> None:
        if progress.is_complete and not progress.completed:
            done = JobEvent.create(job_id, "completed", total=progress.total,
                                   counts=progress.by_verdict, replay_id=replay_id)
            await self.s.publisher.publish(self.s.topics.jobs, job_id.encode(), done.dumps())
            await self.s.jobs.mark_completed(jkey)

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        jobs = self.s.jobs
        if topic == self.s.topics.verdicts:
            verdict = VerdictEvent.decode(value)
            await self.finals.submit(job_key(verdict.job_id, verdict.replay_id), verdict)
            return
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
        await self._announce(job_id, replay_id, jkey, await jobs.progress(jkey))
