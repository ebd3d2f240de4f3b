"""Job bookkeeping shared by all workers: dedupe within a job run, progress, completion.

Every operation is idempotent under redelivery (Kafka delivers at least once):

* :meth:`JobStore.claim` remembers, per dedupe key, *which* submission (its source
  ``topic:partition:offset``) came first. Seeing that same submission again (after a crash)
  claims again; a different submission with the same key is a duplicate.
* :meth:`JobStore.record_final` counts each dedupe key once, whatever the number of verdict
  events for it. A final verdict of another submission than the claimed one (possible only
  after a claim was lost, see ``sinks.redis_jobs``) counts that submission as a duplicate.

A *job key* is the job id, or ``job_id@replay_id`` for a replay run, so a replay is
deduplicated and tracked on its own.

``sinks.memory_jobs.MemoryJobStore`` serves tests and single-process use; the Redis implementation
(``sinks.redis_jobs.RedisJobStore``) is the one workers share.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Final", "JobProgress", "JobStore", "job_key"]

#: one final verdict to count: dedupe key, verdict, and the source of the submission it
#: answers (None when unknown)
Final = tuple[str, str, str | None]


def job_key(job_id: str, replay_id: str | None = None) -> str:
    """The key of a job run: the job id, or ``job_id@replay_id`` for a replay.

    >>> job_key("j1"), job_key("j1", "r7")
    ('j1', 'j1@r7')
    """
    return f"{job_id}@{replay_id}" if replay_id else job_id


@dataclass(frozen=True)
class JobProgress:
    """Where a job run stands. ``total`` is None until the job's size is known."""

    total: int | None
    final: int
    duplicates: int
    by_verdict: dict[str, int] = field(default_factory=dict)
    completed: bool = False

    @property
    def done(self) -> int:
        """Submissions accounted for: unique addresses with a final verdict + duplicates."""
        return self.final + self.duplicates

    @property
    def is_complete(self) -> bool:
        return self.total is not None and self.done >= self.total


class JobStore(Protocol):
    async def claim(self, key: str, dedupe_key: str, source: str) -> bool:
        """True when ``source`` is the first submission of ``dedupe_key`` in the job run."""
        ...

    async def claim_many(self, key: str, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """:meth:`claim` for many ``(dedupe_key, source)`` at once, in order (one round trip).
        """
        ...

    async def record_duplicates(self, key: str, sources: Sequence[str]) -> JobProgress:
        """Count each of ``sources`` as a duplicate submission (idempotent per source),
        then :meth:`progress`, in one round trip (a list with many repeats sends one
        ``duplicate`` event per repeat)."""
        ...

    async def set_total(self, key: str, total: int) -> None:
        """The number of submissions in the job run (from its job-created event)."""
        ...

    async def record_final(self, key: str, dedupe_key: str, verdict: str,
                           source: str | None = None) -> bool:
        """Count a final verdict once per dedupe key; True when it was new."""
        ...

    async def record_finals(self, key: str, finals: Sequence[Final]) -> JobProgress:
        """:meth:`record_final` for many ``(dedupe_key, verdict, source)``, then
        :meth:`progress`, in one round trip."""
        ...

    async def progress(self, key: str) -> JobProgress: ...

    async def mark_completed(self, key: str) -> bool:
        """True exactly once per job run: whoever gets True announces completion."""
        ...

    async def erase(self, job_id: str) -> int:
        """Forget every run of ``job_id`` and remember that it was erased (for good): the
        number of keys removed."""
        ...

    async def erased(self, job_ids: Collection[str]) -> set[str]:
        """Those of ``job_ids`` that were erased (one round trip); their events are left
        alone by every stage."""
        ...
