"""Sink stages: verdicts (and job events) to Postgres, verdicts to RabbitMQ.

Each stage batch is one write (a multi-row upsert, one AMQP transaction), retried until it
succeeds, so an event is acked only once its row is in Postgres or its message was
committed by RabbitMQ; while a sink's service is down, that stage waits and its window
fills, and it resumes where it was when the service is back. A write that fails for
another reason is narrowed down by the stage to the one event at fault (dead-lettered).
Neither writes anything of an erased job: Postgres checks its tombstone in the same
statement, the bridge asks the job store.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from agents.erased import without_erased
from agents.events import decode_each, decode_verdict
from agents.outage import retry_transient
from agents.ports import (
    BridgeRefused,
    Done,
    Outcome,
    RawEvent,
    Services,
    VerdictBridge,
    VerdictWriter,
)
from schemas import JobEvent

__all__ = ["PostgresSinkHandler", "BridgeHandler"]


class PostgresSinkHandler:
    def __init__(self, services: Services, sink: VerdictWriter) -> None:
        self.s = services
        self.sink = sink

    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(events)
        topics = self.s.topics
        verdicts = [v for _, v in decode_each(events, outcomes, decode_verdict,
                                              topic=topics.verdicts)]
        if verdicts:
            await retry_transient("postgres sink", lambda: self.sink.write_verdicts(verdicts))
        for _, job_event in decode_each(events, outcomes, JobEvent.decode, topic=topics.jobs):
            await retry_transient("postgres sink",
                                  functools.partial(self.sink.write_job_event, job_event))
        return outcomes


class BridgeHandler:
    def __init__(self, services: Services, bridge: VerdictBridge) -> None:
        self.s = services
        self.bridge = bridge
        # wrong credentials or vhost: hold the verdicts (logged) until the operator fixes it
        self._also = (BridgeRefused,)

    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(events)
        # a verdict of an erased job is not handed on
        verdicts = await without_erased(
            self.s, "rabbitmq bridge",
            (v for _, v in decode_each(events, outcomes, decode_verdict)),
            lambda v: v.job_id)
        if verdicts:
            await retry_transient("rabbitmq bridge", lambda: self.bridge.publish(verdicts),
                                  also=self._also)
        return outcomes
