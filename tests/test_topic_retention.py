"""Every topic mailsift creates has an explicit retention (#12): MAILSIFT_RETENTION_DAYS,
asked back from the real broker; one made earlier with another is named in a warning."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

import pytest

from mailsift.settings import Settings
from streams.topics import bootstrap_servers, ensure_topics

pytestmark = pytest.mark.stack


async def _retention(settings: Settings, topics: list[str]) -> dict[str, str | None]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    await admin.start()
    try:
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    return {r[3]: {e[0]: e[1] for e in r[4]}.get("retention.ms")
            for a in answers for r in a.resources}


def test_topics_are_created_with_the_retention_and_a_different_one_is_named(
        stack: Settings, caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"ret-{uuid.uuid4().hex[:8]}."
    two = dataclasses.replace(stack, topic_prefix=prefix, retention_days=2.0)
    names = asyncio.run(ensure_topics(two))
    topics = names.all()
    assert len(topics) >= 9
    assert asyncio.run(_retention(two, topics)) == {t: "172800000" for t in topics}
    with caplog.at_level(logging.WARNING, logger="streams.topics"):
        asyncio.run(ensure_topics(two))  # the same: nothing to say
        assert not caplog.records
        asyncio.run(ensure_topics(dataclasses.replace(two, retention_days=30.0)))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{len(topics)} topic(s) keep their records for another time "
                           "than MAILSIFT_RETENTION_DAYS=30 (retention.ms=2592000000)")
    assert f"{prefix}submissions retention.ms=172800000" in line
