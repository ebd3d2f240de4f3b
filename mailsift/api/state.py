"""What the API's handlers share: settings, clients, metrics, and its own job registry.

:class:`JobRegistry` keeps, per job submitted through the API, its size, submission time
and webhook URL in Redis (``mailsift:api:job:{job_id}``, a hash with the job store's TTL:
7 days, or ``MAILSIFT_RETENTION_DAYS`` when that is shorter). The status endpoint knows a
job from it before any worker has seen the job, and the webhook dispatcher finds the URL
there (in whichever API instance sees the completion).

>>> JobRegistry.key("j1")
'mailsift:api:job:j1'
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio
from aiohttp import web

from agents.jobstore import JobProgress, job_key
from mailsift.api.metrics import ApiMetrics
from mailsift.settings import Settings
from sinks.postgres import PostgresSink
from sinks.redis_client import as_text
from sinks.redis_daily import DailyAllowance
from sinks.redis_jobs import Rebuild, RedisJobStore
from sinks.redis_sessions import RedisSessions
from sinks.redis_webhooks import RedisWebhookOutbox

__all__ = ["ApiState", "JobRegistry", "STATE", "TTL_SECONDS"]

#: how long the API remembers a job (the same as the workers' job bookkeeping)
TTL_SECONDS = 7 * 86_400


#: HSET only on a record that still exists (an erasure removes it: nothing brings it back)
_UPDATE_IF_KNOWN = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV))
return 1
"""


class JobRegistry:
    """Jobs submitted through the API, in Redis (shared by every API instance)."""

    PREFIX = "mailsift:api:"

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "mailsift:",
                 rebuild: Rebuild | None = None, ttl_seconds: float = TTL_SECONDS) -> None:
        self.redis = client
        self.ttl_seconds = max(1, int(ttl_seconds))
        # with ``rebuild``, the API can also bring back a job state Redis lost
        self.store = RedisJobStore(client, prefix=prefix, rebuild=rebuild,
                                   ttl_seconds=ttl_seconds)

    @classmethod
    def key(cls, job_id: str) -> str:
        return f"{cls.PREFIX}job:{job_id}"

    async def record(self, job_id: str, *, total: int | None, submitted_at: str,
                     webhook: str | None, owner: str | None = None,
                     **extra: str) -> None:
        """Remember a job at submission (before its events are produced); ``extra``
        fields too (an upload's ``state`` and ``name``)."""
        mapping: dict[Any, Any] = {"submitted_at": submitted_at, **extra}
        if total is not None:
            mapping["total"] = str(total)
        if owner:
            mapping["owner"] = owner
        if webhook:
            mapping["webhook"] = webhook
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(job_id), mapping=mapping)
            pipe.expire(self.key(job_id), self.ttl_seconds)
            await pipe.execute()

    async def update(self, job_id: str, **fields: str | int) -> bool:
        """Set fields of a job's record, if it still has one (False: the job was erased
        or forgotten, and nothing is written)."""
        args: list[str] = []
        for name, value in fields.items():
            args += [name, str(value)]
        return bool(await self.redis.eval(
            _UPDATE_IF_KNOWN, 1, self.key(job_id), *args))

    async def forget(self, job_id: str) -> int:
        """Drop the job's record (the job was erased): keys removed."""
        return int(await self.redis.unlink(self.key(job_id)))

    async def get(self, job_id: str) -> dict[str, str]:
        """The job's record (empty when the API did not submit it or forgot it)."""
        raw = await self.redis.hgetall(self.key(job_id))
        return {as_text(k): as_text(v) for k, v in dict(raw or {}).items()}

    async def progress(self, job_id: str) -> JobProgress:
        """The workers' bookkeeping of the job's original run (Redis job store)."""
        return await self.store.progress(job_key(job_id))


@dataclass
class ApiState:
    """Everything a handler needs; the clients are made when the app starts."""

    settings: Settings
    metrics: ApiMetrics
    sink: PostgresSink
    redis: redis.asyncio.Redis
    jobs: JobRegistry
    #: scheduled webhook deliveries (:mod:`mailsift.api.webhook_dispatch`)
    outbox: RedisWebhookOutbox
    #: the tokens' daily address quotas
    allowance: DailyAllowance
    #: dashboard logins
    sessions: RedisSessions
    http: aiohttp.ClientSession | None = None
    #: the background submissions of accepted lists (:mod:`mailsift.api.delivery`)
    background: set[asyncio.Task[None]] = field(default_factory=set)


STATE = web.AppKey("mailsift_api_state", ApiState)
