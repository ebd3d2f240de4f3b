"""Erasing one job on request (``mailsift jobs delete``, ``DELETE /v1/jobs/{id}``).

The event log is append-only, so a job cannot be cut out of the Kafka topics. What mailsift
does instead, in this order:

1. A ``deleted`` job event goes to the ``jobs`` topic first. It is the durable record of
   the erasure: the Postgres sink stage, the progress stage (Redis) and the API's webhook
   dispatcher each erase the job again when they read it, so an erasure whose later steps
   met an outage is still carried out, and a stage batch that was in flight during the
   erasure loses what it wrote then. Every reader of the log leaves
   the job alone from then on: ``mailsift replay`` copies none of its submissions,
   ``mailsift sink rebuild`` writes none of its rows, and the job-state rebuild brings
   none of its keys back.
2. Redis: every key of every run of the job (claims, finals, counts), the API's record of
   it and its webhook delivery are removed, and the id is kept as erased (no address), so
   the stages drop whatever of the job is still in flight.
3. Postgres: the job's runs and verdicts are removed, and a tombstone (job id and time)
   stops any late write.

The job's records stay on the broker, unread by mailsift, until the topics' retention
(``MAILSIFT_RETENTION_DAYS``) removes them. Each step is idempotent: an erasure that
failed half way (a service was down) is simply run again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailsift.settings import Settings
from schemas import JobEvent

if TYPE_CHECKING:
    from mailsift.api.state import JobRegistry
    from sinks.postgres import ErasedRows, PostgresSink
    from sinks.redis_jobs import RedisJobStore
    from sinks.redis_webhooks import RedisWebhookOutbox

__all__ = ["Erasure", "Eraser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed (``rows`` is None without a Postgres sink)."""

    job_id: str
    rows: ErasedRows | None
    redis_keys: int

    @property
    def found(self) -> bool:
        """Whether anything of the job was stored (in Postgres or Redis)."""
        return self.redis_keys > 0 or (self.rows is not None and self.rows.jobs > 0)


@dataclass
class Eraser:
    """The clients an erasure uses; the ones that are None are not configured."""

    settings: Settings
    store: RedisJobStore | None = None
    registry: JobRegistry | None = None
    outbox: RedisWebhookOutbox | None = None
    sink: PostgresSink | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Eraser:
        """An eraser with clients of its own (the CLI); :meth:`close` them after."""
        # the clients are slow to import: only a command that erases loads them
        from mailsift.api.state import JobRegistry
        from sinks.postgres import PostgresSink
        from sinks.redis_client import redis_client
        from sinks.redis_jobs import RedisJobStore
        from sinks.redis_webhooks import RedisWebhookOutbox

        eraser = cls(settings)
        if settings.redis_url:
            client = redis_client(settings.redis_url, max_connections=4)
            eraser.store = RedisJobStore(client, prefix=settings.redis_prefix)
            eraser.registry = JobRegistry(client, prefix=settings.redis_prefix)
            eraser.outbox = RedisWebhookOutbox(client, prefix=settings.redis_prefix)
        if settings.database_url:
            eraser.sink = PostgresSink(settings.database_url, max_connections=1)
        return eraser

    async def close(self) -> None:
        if self.store is not None:
            await self.store.redis.aclose()
        if self.sink is not None:
            await self.sink.close()

    async def erase(self, job_id: str) -> Erasure:
        """Erase ``job_id`` everywhere (see the module docstring for the order)."""
        # aiokafka is slow to import: only when a job is erased
        from streams.client import publish_job_event

        await publish_job_event(self.settings, JobEvent.create(job_id, "deleted"))
        keys = 0
        if self.store is not None:
            keys += await self.store.erase(job_id)
        if self.registry is not None:
            keys += await self.registry.forget(job_id)
        if self.outbox is not None:
            keys += await self.outbox.forget(job_id)
        rows = await self.sink.erase_job(job_id) if self.sink is not None else None
        log.info("erased job %s: %s verdict rows, %d Redis keys", job_id,
                 rows.verdicts if rows is not None else "no", keys, extra={"job_id": job_id})
        return Erasure(job_id, rows, keys)
