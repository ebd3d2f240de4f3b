"""What the agents share inside one worker: settings, topic names, engine, job store, producer.

Built once per worker by :func:`build_services`. With ``MAILSIFT_REDIS_URL`` set, the DNS
cache, the per-MX politeness limits and the job bookkeeping live in Redis and are shared by
every worker; without it they are per process (fine for one worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faust.exceptions import ProducerSendError

from checks import Engine, EngineConfig
from mailsift.settings import Settings
from streams.jobstore import JobStore, MemoryJobStore
from streams.stage import Record
from streams.topics import TopicNames

__all__ = ["Services", "build_services", "FaustPublisher"]


class FaustPublisher:
    """Produces through the Faust app's producer and waits for the broker's acks.

    Faust wraps the producer's Kafka errors in ``ProducerSendError``; they are raised as
    the aiokafka error they wrap, so the stages see an outage as one.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.publish_many([Record(topic, key, value)])

    async def publish_many(self, records: Sequence[Record]) -> None:
        send = self.app.producer.send
        try:
            # queued one after the other (so in order per partition), then one wait for all
            sent = [await send(r.topic, r.key, r.value, r.partition, None, None)
                    for r in records]
            await asyncio.gather(*sent)
        except ProducerSendError as exc:
            if exc.__cause__ is not None:
                raise exc.__cause__ from None
            raise


@dataclass
class Services:
    settings: Settings
    topics: TopicNames
    engine: Engine
    jobs: JobStore
    publisher: Any  # streams.stage.Publisher
    redis: Any = None


def build_services(settings: Settings, publisher: Any) -> Services:
    config = EngineConfig.from_settings(settings)
    client = None
    if settings.redis_url:
        from sinks.job_rebuild import rebuilder
        from sinks.redis_jobs import RedisJobStore
        from sinks.redis_tables import RedisDnsCache, RedisPoliteness, redis_client

        client = redis_client(settings.redis_url)
        engine = Engine(
            config, cache=RedisDnsCache(client, prefix=settings.redis_prefix),
            politeness=RedisPoliteness(
                client, max_connections=settings.mx_max_connections,
                rcpt_per_second=settings.mx_max_rcpt_per_second,
                # renewed every second while a session is open (so a lease Redis lost is
                # back within a second); a lease outlives five missed renewals (an event
                # loop stalled for 5 s), and a crashed worker's slots are free within 6 s:
                # the other workers' sessions to its hosts wait for no longer than that
                lease_seconds=6.0,
                prefix=settings.redis_prefix,
            ),
        )
        jobs: JobStore = RedisJobStore(client, prefix=settings.redis_prefix,
                                       rebuild=rebuilder(settings))
    else:
        engine = Engine(config)
        jobs = MemoryJobStore()
    return Services(settings, TopicNames.from_settings(settings), engine, jobs, publisher,
                    client)
