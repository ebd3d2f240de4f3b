"""Creating the topics (their names: :mod:`agents.topics`), with an explicit retention.

Every topic mailsift creates keeps its records ``MAILSIFT_RETENTION_DAYS`` (``retention.ms``),
so a job's addresses leave the event log then, whatever the broker's default. A topic that
exists with another retention is not changed (Tansu, the local broker, cannot alter topic
configs; on Apache Kafka, ``kafka-configs.sh --alter`` does it): a warning names it.
"""

from __future__ import annotations

import logging

from agents.topics import TopicNames
from mailsift.settings import Settings

__all__ = ["ensure_topics", "bootstrap_servers", "retention_ms"]

log = logging.getLogger(__name__)


def bootstrap_servers(settings: Settings) -> str:
    """``kafka://host:port[;kafka://…]`` → ``host:port,…`` for aiokafka."""
    return ",".join(u.strip().removeprefix("kafka://")
                    for u in settings.kafka_broker.replace(";", ",").split(","))


def retention_ms(settings: Settings) -> int:
    """The ``retention.ms`` of mailsift's topics.

    >>> from mailsift.settings import load_settings
    >>> retention_ms(load_settings({"MAILSIFT_RETENTION_DAYS": "2"}))
    172800000
    """
    return round(settings.retention_days * 86_400_000)


async def ensure_topics(settings: Settings) -> TopicNames:
    """Create mailsift's topics that do not exist yet, with their retention (idempotent);
    warn about an existing one whose retention differs."""
    # aiokafka is slow to import: only what talks to the broker loads it
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    names = TopicNames.from_settings(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings),
                                request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names.all() if n not in existing]
        wanted = str(retention_ms(settings))
        if missing:
            await admin.create_topics(
                [NewTopic(n, settings.partitions, settings.replication_factor,
                          topic_configs={"retention.ms": wanted}) for n in missing])
        ours = [n for n in names.all() if n in existing]
        if ours:
            answers = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in ours])
            differ = {resource[3]: value for answer in answers
                      for resource in answer.resources
                      if (value := {e[0]: e[1] for e in resource[4]}.get("retention.ms"))
                      not in (None, wanted)}
            if differ:  # one line, naming them all
                log.warning("%d topic(s) keep their records for another time than "
                            "MAILSIFT_RETENTION_DAYS=%g (retention.ms=%s): %s; change it on "
                            "the broker", len(differ), settings.retention_days, wanted,
                            ", ".join(f"{n} retention.ms={v}" for n, v in differ.items()))
    finally:
        await admin.close()
    return names
