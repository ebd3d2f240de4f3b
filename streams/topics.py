"""Topic names and their creation.

All names share ``MAILSIFT_TOPIC_PREFIX`` (default ``mailsift.``). Retry delays get one topic
per tier (``retries.0``, ``retries.1``…): every event of a tier waits the same delay, so
each tier's topic is in due-time order and its agent just sleeps until the head is due.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsift.settings import Settings

__all__ = ["TopicNames", "ensure_topics"]


@dataclass(frozen=True)
class TopicNames:
    submissions: str
    replays: str
    by_domain: str
    retries: tuple[str, ...]
    verdicts: str
    jobs: str
    dead_letters: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        p = settings.topic_prefix
        return cls(
            submissions=f"{p}submissions",
            replays=f"{p}replays",
            by_domain=f"{p}by-domain",
            retries=tuple(f"{p}retries.{i}" for i in range(len(settings.retry_delays))),
            verdicts=f"{p}verdicts",
            jobs=f"{p}jobs",
            dead_letters=f"{p}dead-letters",
        )

    def all(self) -> list[str]:
        return [self.submissions, self.replays, self.by_domain, *self.retries, self.verdicts,
                self.jobs, self.dead_letters]


def bootstrap_servers(settings: Settings) -> str:
    """``kafka://host:port[;kafka://…]`` → ``host:port,…`` for aiokafka."""
    return ",".join(u.strip().removeprefix("kafka://")
                    for u in settings.kafka_broker.replace(";", ",").split(","))


async def ensure_topics(settings: Settings) -> TopicNames:
    """Create mailsift's topics that do not exist yet (idempotent)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = TopicNames.from_settings(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings),
                                request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names.all() if n not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(n, settings.partitions, settings.replication_factor)
                 for n in missing])
    finally:
        await admin.close()
    return names
