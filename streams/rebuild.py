"""Rebuild the Postgres sink from the topics (the event log is the source of truth)."""

from __future__ import annotations

from agents.topics import TopicNames
from mailsift.settings import Settings
from schemas import JobEvent, VerdictEvent
from sinks.postgres import PostgresSink
from streams.client import scan_records

__all__ = ["DatabaseNotEmpty", "rebuild_from_topics"]


class DatabaseNotEmpty(RuntimeError):
    """The database already holds verdicts; the message says what to do."""


async def rebuild_from_topics(settings: Settings, *, batch_size: int = 1000
                              ) -> tuple[int, int]:
    """Read ``jobs`` and ``verdicts`` from the beginning into an empty database."""
    names = TopicNames.from_settings(settings)
    sink = PostgresSink(settings.database_url)
    try:
        if not await sink.is_empty():
            raise DatabaseNotEmpty("the verdicts table is not empty: rebuild fills an empty "
                                   "database (drop or truncate the tables first)")
        jobs = 0
        async for event in scan_records(settings, names.jobs, JobEvent.decode):
            await sink.write_job_event(event)
            jobs += 1
        verdicts = 0
        batch: list[VerdictEvent] = []
        async for verdict in scan_records(settings, names.verdicts, VerdictEvent.decode):
            batch.append(verdict)
            if len(batch) >= batch_size:
                await sink.write_verdicts(batch)
                verdicts += len(batch)
                batch = []
        if batch:
            await sink.write_verdicts(batch)
            verdicts += len(batch)
        return verdicts, jobs
    finally:
        await sink.close()
