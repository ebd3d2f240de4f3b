"""Progress stage: count final verdicts and duplicates per job; announce completion.

Consumes ``verdicts`` and ``jobs`` (both keyed by job id). A job is complete when its
``created`` event said how many submissions it has and every one is accounted for: a unique
address with a final verdict, or a duplicate. The ``completed`` event carries the counts by
verdict; it is sent at least once (consumers should treat a repeat as the same event).
The events of an erased job are not counted, and its ``deleted`` event erases its keys
(a second time after ``mailsift jobs delete``, or the first when Redis was away then).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.batching import KeyedBatcher
from agents.erased import without_erased
from agents.events import decode_each, decode_verdict
from agents.jobstore import JobProgress, job_key
from agents.outage import retry_transient
from agents.ports import Done, Outcome, RawEvent, Services
from schemas import JobEvent, VerdictEvent

__all__ = ["ProgressHandler"]

log = logging.getLogger(__name__)


#: one final verdict to count: job id, replay id, dedupe key, verdict, source
_Final = tuple[str, str | None, str, str, str | None]


@dataclass(slots=True)
class _JobEvents:
    """What a batch's job events say of one job run."""

    job_id: str
    replay_id: str | None
    total: int | None = None
    duplicates: list[str] = field(default_factory=list)


class ProgressHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        # the verdicts of one job that arrive together are counted in one Redis script,
        # which also answers the job's progress (one round trip per batch, not two per
        # verdict); one batch per job at a time, so a completion is seen after its counts
        self.finals: KeyedBatcher[_Final, None] = KeyedBatcher(
            self._count, window=0.02, max_batch=1000, serial_per_key=True)

    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(events)
        topics = self.s.topics
        finals: dict[str, list[_Final]] = {}
        verdicts = [v for _, v in decode_each(events, outcomes, decode_verdict,
                                              topic=topics.verdicts)]
        job_events = [e for _, e in decode_each(events, outcomes, JobEvent.decode,
                                                topic=topics.jobs)]
        # the erasure's own event: its keys go (again, after the eraser's own try: a batch
        # that was in flight then may have written one), wherever the eraser could not reach
        for event in job_events:
            if event.kind == "deleted":
                await retry_transient("progress erasure",
                                      functools.partial(self.s.jobs.erase, event.job_id))
        # an erased job is not counted, so none of its keys comes back
        both: list[VerdictEvent | JobEvent] = [*verdicts, *job_events]
        kept = await without_erased(self.s, "progress", both, lambda e: e.job_id)
        for v in kept:
            if isinstance(v, VerdictEvent):
                finals.setdefault(job_key(v.job_id, v.replay_id), []).append(
                    (v.job_id, v.replay_id, v.dedupe_key, v.verdict, v.source))
        waits = [self.finals.enqueue(jkey, items) for jkey, items in finals.items()]
        runs: dict[str, _JobEvents] = {}
        for e in kept:
            if isinstance(e, JobEvent):
                run = runs.setdefault(job_key(e.job_id, e.replay_id),
                                      _JobEvents(e.job_id, e.replay_id))
                if e.kind == "created" and e.total is not None:
                    run.total = e.total
                elif e.kind == "duplicate" and e.source:
                    run.duplicates.append(e.source)
        for jkey, run in runs.items():
            await self._job_events(jkey, run)
        if waits:
            await asyncio.gather(*waits)
        return outcomes

    async def _count(self, batch: list[_Final]) -> list[None]:
        job_id, replay_id = batch[0][0], batch[0][1]
        jkey = job_key(job_id, replay_id)
        progress = await self.s.jobs.record_finals(jkey, [(d, v, src)
                                                          for _, _, d, v, src in batch])
        await self._announce(job_id, replay_id, jkey, progress)
        return [None] * len(batch)

    async def _job_events(self, jkey: str, run: _JobEvents) -> None:
        """A batch's job events of one job run: its total, and all its duplicates in one
        round trip (a list with many repeats has a ``duplicate`` event per repeat)."""
        jobs = self.s.jobs
        if run.total is None and not run.duplicates:
            return
        if run.total is not None:
            await jobs.set_total(jkey, run.total)
        progress = (await jobs.record_duplicates(jkey, run.duplicates) if run.duplicates
                    else await jobs.progress(jkey))
        await self._announce(run.job_id, run.replay_id, jkey, progress)

    async def _announce(self, job_id: str, replay_id: str | None, jkey: str,
                        progress: JobProgress) -> None:
        if progress.is_complete and not progress.completed:
            done = JobEvent.create(job_id, "completed", total=progress.total,
                                   counts=progress.by_verdict, replay_id=replay_id)
            await self.s.publisher.publish(self.s.topics.jobs, job_id.encode(), done.dumps())
            if await self.s.jobs.mark_completed(jkey):
                log.info("job %s%s completed: %d submissions, %s", job_id,
                         f" (replay {replay_id})" if replay_id else "", progress.total or 0,
                         dict(progress.by_verdict), extra={"job_id": job_id})
