"""Creating the topics (their names: :mod:`agents.topics`)."""

from __future__ import annotations

from agents.topics import TopicNames
from mailsift.settings import Settings

__all__ = ["ensure_topics", "bootstrap_servers"]


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
