"""The Kafka side of the handlers' :class:`~agents.ports.Publisher`: the Faust app's producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from faust.exceptions import ProducerSendError

from agents.ports import Record

__all__ = ["FaustPublisher"]


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
