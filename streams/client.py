"""Talk to the pipeline from outside a worker: submit jobs, follow verdicts and job events.

This is what ``mailsift submit``/``validate`` and the tests use; upstream systems can do the
same with any Kafka client (see the README for the JSON they produce).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mailsift.settings import Settings
from schemas import JobEvent, SchemaError, Submission, VerdictEvent
from streams.topics import TopicNames, bootstrap_servers, ensure_topics

__all__ = ["new_job_id", "submit_job", "follow", "Followed", "read_topic"]


def new_job_id() -> str:
    """>>> len(new_job_id())
    32
    """
    return uuid.uuid4().hex


async def submit_job(settings: Settings, emails: Sequence[str], *, job_id: str | None = None,
                     request_ids: Sequence[str] | None = None,
                     metadata: dict[str, Any] | None = None) -> str:
    """Produce one submission per address, then the job's ``created`` event; return the id."""
    names = await ensure_topics(settings)
    job_id = job_id or new_job_id()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        key = job_id.encode()
        futures = []
        for i, email in enumerate(emails):
            sub = Submission.create(job_id, email, metadata=metadata,
                                    request_id=request_ids[i] if request_ids else None)
            futures.append(await producer.send(names.submissions, sub.dumps(), key=key))
        await asyncio.gather(*futures)
        created = JobEvent.create(job_id, "created", total=len(emails))
        await producer.send_and_wait(names.jobs, created.dumps(), key=key)
    finally:
        await producer.stop()
    return job_id


@dataclass(frozen=True)
class Followed:
    """One event seen while following: a verdict or a job event (the other is None)."""

    verdict: VerdictEvent | None
    job: JobEvent | None


async def follow(settings: Settings, job_id: str | None = None, *,
                 from_beginning: bool = True) -> AsyncIterator[Followed]:
    """Yield verdicts and job events (of ``job_id`` only, when given) as they arrive.

    Reads without a consumer group (it never disturbs the workers' offsets).
    """
    names = TopicNames.from_settings(settings)
    consumer = AIOKafkaConsumer(
        names.verdicts, names.jobs, bootstrap_servers=bootstrap_servers(settings),
        group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        async for msg in consumer:
            try:
                if msg.topic == names.verdicts:
                    verdict = VerdictEvent.decode(msg.value)
                    if job_id is None or verdict.job_id == job_id:
                        yield Followed(verdict, None)
                else:
                    event = JobEvent.decode(msg.value)
                    if job_id is None or event.job_id == job_id:
                        yield Followed(None, event)
            except SchemaError:
                continue  # not ours to judge here; the workers dead-letter bad events
    finally:
        await consumer.stop()


async def read_topic(settings: Settings, topic: str, *, timeout: float = 5.0
                     ) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Everything currently in ``topic``: (partition, offset, key, value), for inspection."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[int, int, bytes | None, bytes | None]] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = asyncio.get_running_loop().time() + timeout
        while remaining and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < end[tp]:
                        out.append((tp.partition, m.offset, m.key, m.value))
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()

