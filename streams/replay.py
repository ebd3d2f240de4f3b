"""Replay: re-verify submissions from the ``submissions`` topic, the source of truth.

The topic is scanned from its beginning until it has been read to its end, and filtered here
(by job id and by ``submitted_at``), without the broker's timestamp-to-offset lookup or its
end offsets, which not every Kafka-compatible broker reports reliably (Tansu does not).
Matching submissions are copied to the ``replays`` topic with a fresh ``replay_id``,
followed by one ``created`` job event per job; the workers check them again and emit new
verdicts (new ``checked_at``; the ``replay_id`` tells them apart), and each job's replay
run completes on its own. An erased job (a ``deleted`` event in ``jobs``) is never
replayed: its submissions are skipped, and asking for it by id is refused.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from mailsift.settings import Settings
from schemas import JobEvent, SchemaError, Submission, submission_key
from streams.client import JobErased, dedupe_key, erased_jobs, scan_topic
from streams.topics import bootstrap_servers, ensure_topics

__all__ = ["ReplaySummary", "JobErased", "replay", "parse_since"]


@dataclass
class ReplaySummary:
    replay_id: str
    scanned: int = 0
    skipped_malformed: int = 0
    #: submissions of erased jobs, left alone
    skipped_erased: int = 0
    jobs: Counter[str] = field(default_factory=Counter)

    @property
    def replayed(self) -> int:
        return sum(self.jobs.values())


def parse_since(text: str) -> datetime:
    """An ISO 8601 time; a naive one is taken as UTC.

    >>> parse_since("2026-11-25T14:00:00Z").isoformat()
    '2026-11-25T14:00:00+00:00'
    >>> parse_since("2026-11-25").isoformat()
    '2026-11-25T00:00:00+00:00'
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _submitted_at(sub: Submission, broker_ms: int) -> datetime:
    if sub.submitted_at:
        try:
            return parse_since(sub.submitted_at)
        except ValueError:
            pass
    return datetime.fromtimestamp(broker_ms / 1000, UTC)


async def replay(settings: Settings, *, job_id: str | None = None,
                 since: datetime | None = None) -> ReplaySummary:
    """Copy the matching submissions to ``replays``; with no filter, all of them."""
    names = await ensure_topics(settings)
    erased = await erased_jobs(settings)
    if job_id is not None and job_id in erased:
        raise JobErased(f"job {job_id} was erased (mailsift jobs delete): it is not replayed")
    summary = ReplaySummary(replay_id=uuid.uuid4().hex[:12])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), acks="all",
                                linger_ms=5)
    try:
        await producer.start()  # stop() below also cleans up a failed start
        pending = []
        async for msg in scan_topic(settings, names.submissions):
            summary.scanned += 1
            try:
                sub = Submission.decode(msg.value)
            except SchemaError:
                summary.skipped_malformed += 1
                continue
            if job_id is not None and sub.job_id != job_id:
                continue
            if sub.job_id in erased:
                summary.skipped_erased += 1
                continue
            if since is not None and _submitted_at(sub, msg.timestamp) < since:
                continue
            copy = Submission(**{**sub.asdict(), "replay_id": summary.replay_id})
            key = submission_key(sub.job_id, dedupe_key(sub.email))
            pending.append(await producer.send(names.replays, copy.dumps(), key=key))
            summary.jobs[sub.job_id] += 1
        for fut in pending:
            await fut
        for job, total in summary.jobs.items():
            event = JobEvent.create(job, "created", total=total, replay_id=summary.replay_id)
            await producer.send_and_wait(names.jobs, event.dumps(), key=job.encode())
    finally:
        await producer.stop()
    return summary
