"""Sink stages: verdicts (and job events) to Postgres, verdicts to RabbitMQ.

Both batch writes (:class:`~agents.batching.KeyedBatcher`) and retry a failed write until
it succeeds, so an event is acked only once its row is in Postgres or its message was
confirmed by RabbitMQ; while a sink's service is down, that stage waits and its window
fills, and it resumes where it was when the service is back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.batching import KeyedBatcher
from schemas import JobEvent, VerdictEvent
from streams.services import Services
from streams.stage import retry_transient

__all__ = ["PostgresSinkHandler", "BridgeHandler"]


def _batch_writer(what: str, write: Callable[[Sequence[VerdictEvent]], Awaitable[Any]],
                  also: tuple[type[BaseException], ...] = ()
                  ) -> KeyedBatcher[VerdictEvent, Exception | None]:
    """Batched writes; a batch that fails for a reason other than an outage is written again
    one event at a time, so only the event that cannot be written is dead-lettered."""

    async def run(batch: list[VerdictEvent]) -> list[Exception | None]:
        try:
            await retry_transient(what, lambda: write(batch), also=also)
            return [None] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        return [await _write_one(item) for item in batch]

    async def _write_one(item: VerdictEvent) -> Exception | None:
        try:
            await retry_transient(what, lambda: write([item]), also=also)
            return None
        except Exception as exc:
            return exc

    return KeyedBatcher(run, window=0.2, max_batch=500, concurrency=2)


async def _written(batcher: KeyedBatcher[VerdictEvent, Exception | None], key: str,
                   verdict: VerdictEvent) -> None:
    error = await batcher.submit(key, verdict)
    if error is not None:
        raise error  # the stage dead-letters this event, with the error


class PostgresSinkHandler:
    def __init__(self, services: Services, sink: Any) -> None:
        self.s = services
        self.sink = sink  # sinks.postgres.PostgresSink
        self.batcher = _batch_writer("postgres sink", sink.write_verdicts)

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        if topic == self.s.topics.verdicts:
            await _written(self.batcher, topic, VerdictEvent.decode(value))
        else:
            await self.sink.write_job_event(JobEvent.decode(value))


class BridgeHandler:
    def __init__(self, services: Services, bridge: Any) -> None:
        from sinks.rabbitmq import BridgeConfigError

        self.bridge = bridge  # sinks.rabbitmq.RabbitBridge
        # wrong credentials or vhost: hold the verdicts (logged) until the operator fixes it
        self.batcher = _batch_writer("rabbitmq bridge", bridge.publish,
                                     also=(BridgeConfigError,))

    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        await _written(self.batcher, topic, VerdictEvent.decode(value))
