"""Rebuild the job bookkeeping in Redis from the event log (when Redis lost it).

The topics are the source of truth: ``jobs`` holds every job's ``created`` (its total),
``duplicate`` and ``completed`` events, and ``verdicts`` every final verdict with the
source of the submission it answers (which is also that submission's claim). Reading both
from the beginning gives back everything :class:`sinks.redis_jobs.RedisJobStore` keeps,
except the claims of addresses that had no verdict yet (see that module for why a job
still completes with exact counts).

The ``deleted`` events put back the ids of erased jobs, and none of those jobs' keys.

Records stamped after the rebuild started are left to the stages: theirs is the
bookkeeping that was refused while the state was missing, so it was not acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from agents.jobstore import Final, job_key
from agents.topics import TopicNames
from mailsift.settings import Settings
from schemas import JobEvent, VerdictEvent
from sinks.redis_jobs import RedisJobStore
from streams.client import scan_records

__all__ = ["rebuild_job_state", "rebuilder"]

log = logging.getLogger(__name__)

#: records stamped up to this long after the start are read too (producer clocks differ)
_CLOCK_SLACK_MS = 5_000


async def rebuild_job_state(settings: Settings, store: RedisJobStore, *,
                            batch_size: int = 1000) -> tuple[int, int]:
    """Fill ``store`` from the ``jobs`` and ``verdicts`` topics; returns (jobs, verdicts)."""
    names = TopicNames.from_settings(settings)
    until = int(time.time() * 1000) + _CLOCK_SLACK_MS
    totals: dict[str, int] = {}
    completed: set[str] = set()
    duplicates: dict[str, list[str]] = defaultdict(list)
    erased: set[str] = set()
    job_of: dict[str, str] = {}  # a run's key -> its job (a job id may hold an "@")
    async for event in scan_records(settings, names.jobs, JobEvent.decode, until_ms=until):
        if event.kind == "deleted":
            erased.add(event.job_id)
            continue
        jkey = job_key(event.job_id, event.replay_id)
        job_of[jkey] = event.job_id
        if event.kind == "created" and event.total is not None:
            totals[jkey] = event.total
        elif event.kind == "duplicate" and event.source:
            duplicates[jkey].append(event.source)
        elif event.kind == "completed":
            completed.add(jkey)
    # an erased job gets none of its keys back, and stays erased
    await store.restore_erased(erased)
    for jkey, job_id in list(job_of.items()):
        if job_id in erased:
            totals.pop(jkey, None)
            completed.discard(jkey)
            duplicates.pop(jkey, None)
    for jkey in set(totals) | completed | set(duplicates):
        sources = duplicates.get(jkey, [])
        for i in range(0, max(1, len(sources)), batch_size):
            await store.restore(jkey, total=totals.get(jkey), completed=jkey in completed,
                                duplicates=sources[i:i + batch_size])
    verdicts = 0
    pending: dict[str, list[Final]] = defaultdict(list)

    async def flush(jkey: str) -> None:
        await store.restore_finals(jkey, pending.pop(jkey))

    async for verdict in scan_records(settings, names.verdicts, VerdictEvent.decode,
                                      until_ms=until):
        if verdict.job_id in erased:
            continue
        jkey = job_key(verdict.job_id, verdict.replay_id)
        pending[jkey].append((verdict.dedupe_key, verdict.verdict, verdict.source))
        verdicts += 1
        if len(pending[jkey]) >= batch_size:
            await flush(jkey)
    for jkey in list(pending):
        await flush(jkey)
    jobs = len(set(totals) | completed | set(duplicates))
    log.warning("rebuilt the job state of %d job runs from %d verdicts", jobs, verdicts)
    return jobs, verdicts


def rebuilder(settings: Settings) -> Callable[[RedisJobStore], Awaitable[None]]:
    """The ``rebuild`` of a :class:`RedisJobStore` for ``settings``' topics."""

    async def rebuild(store: RedisJobStore) -> None:
        await rebuild_job_state(settings, store)

    return rebuild
