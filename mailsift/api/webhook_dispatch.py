"""Durable webhooks: every completion gets its webhook, whether or not an API was running.

Two loops run in every API instance (:class:`WebhookDispatcher`):

* **Schedule** (:meth:`WebhookDispatcher.schedule_completions`): a Kafka consumer group
  (``{MAILSIFT_APP_ID}-webhooks``) reads the ``jobs`` topic. For each ``completed`` event
  of a job submitted with a webhook it puts a delivery in the Redis outbox
  (:class:`sinks.redis_webhooks.RedisWebhookOutbox`, idempotent), and only then commits
  the offset. So a job that completes while no API runs is scheduled when one starts
  (from the group's committed offset; a new group starts at the beginning of the topic),
  and instances split the topic's partitions between them. Redis away: the loop waits,
  nothing is committed.
* **Send** (:meth:`WebhookDispatcher.send_due`): takes the due deliveries from the outbox
  (leased, so an instance that dies mid-POST loses nothing), POSTs each once and records
  the outcome. A receiver that does not take it is tried again after each of
  ``MAILSIFT_WEBHOOK_RETRY_DELAYS`` in turn (about 14 hours by default), then the
  delivery is given up (``failed``). Every attempt carries the same ``X-Mailsift-Delivery``
  id: a receiver that keeps one body per id sees the webhook exactly once.

``GET /v1/jobs/{id}`` shows the delivery and its log (:meth:`RedisWebhookOutbox.status`).

>>> retry_delay((10.0, 30.0), 1), retry_delay((10.0, 30.0), 2), retry_delay((10.0,), 2)
(10.0, 30.0, None)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any

from agents.outage import Backoff, retry_transient
from mailsift.api.state import ApiState
from mailsift.api.webhooks import post_once, summary_body
from mailsift.settings import Settings
from schemas import JobEvent, SchemaError
from sinks.redis_client import UNAVAILABLE
from sinks.redis_webhooks import Due, State

__all__ = ["WebhookDispatcher", "retry_delay"]

log = logging.getLogger("mailsift.api.webhooks")


def retry_delay(delays: Sequence[float], attempt: int) -> float | None:
    """Seconds before the attempt after ``attempt`` (counted from 1); None: give up."""
    return delays[attempt - 1] if attempt <= len(delays) else None


class WebhookDispatcher:
    """Schedules the webhooks of completed jobs and delivers them (see the module doc)."""

    def __init__(self, state: ApiState, *, poll_seconds: float = 0.5,
                 post_timeout: float = 10.0, max_sending: int = 20) -> None:
        self.state = state
        self.outbox = state.outbox
        self.poll_seconds = poll_seconds
        self.post_timeout = post_timeout
        #: POSTs at once (below the HTTP client's 50 connections: a claimed delivery
        #: never waits for a connection, which would eat into its timeout)
        self.max_sending = max_sending
        #: set while the consumer group has its partitions (tests wait for it)
        self.ready = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Both loops, until cancelled; if one fails, the other is stopped too."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.schedule_completions())
                group.create_task(self.send_due())
        finally:
            sending = list(self._sending)
            for task in sending:
                task.cancel()  # a claimed delivery is due again when its lease ends
            await asyncio.gather(*sending, return_exceptions=True)

    # --- schedule ------------------------------------------------------------------------

    async def schedule_completions(self) -> None:
        """Consume the ``jobs`` topic in the group; reconnect with backoff when Kafka is away."""
        from aiokafka import AIOKafkaConsumer

        # aiokafka is slow to import: only the commands that talk to Kafka load it
        from streams.client import stop_consumer
        from streams.topics import bootstrap_servers, ensure_topics

        settings: Settings = self.state.settings
        backoff = Backoff(1.0, 30.0)
        while True:
            try:
                names = await ensure_topics(settings)
                consumer = AIOKafkaConsumer(
                    names.jobs, bootstrap_servers=bootstrap_servers(settings),
                    group_id=f"{settings.app_id}-webhooks", enable_auto_commit=False,
                    auto_offset_reset="earliest")
                try:
                    # inside: a cancelled start (the API stopping while it joins) must
                    # still leave the group, or the group keeps a member that consumes
                    # nothing, holding its partitions
                    await consumer.start()
                    backoff.reset()
                    while True:
                        batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                        if consumer.assignment():
                            self.ready.set()
                        records = [r for batch in batches.values() for r in batch]
                        for record in records:
                            await self._schedule(record.value)
                        if records:
                            await consumer.commit()
                finally:
                    self.ready.clear()
                    await stop_consumer(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: try again later
                delay = backoff.next()
                log.warning("webhook scheduler: %s: %s; retrying in %.0fs",
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    async def _schedule(self, value: bytes | None) -> None:
        """Schedule the webhook of a completion event (forget the job's on a ``deleted``
        one); waits while Redis is away."""
        try:
            event = JobEvent.decode(value or b"")
        except SchemaError:
            return
        if event.kind == "deleted":  # the job was erased: its record and delivery go too
            async def forget() -> None:
                await self.state.jobs.forget(event.job_id)
                await self.outbox.forget(event.job_id)

            await retry_transient(f"webhook of job {event.job_id}: Redis", forget,
                                  first_delay=1.0, max_delay=30.0, also=UNAVAILABLE)
            return
        if event.kind != "completed" or event.replay_id is not None:
            return
        body = summary_body(event.job_id, event.total, event.counts, event.at)

        async def schedule() -> None:
            url = (await self.state.jobs.get(event.job_id)).get("webhook")
            if url and await self.outbox.schedule(event.job_id, url, body):
                log.info("webhook of job %s scheduled", event.job_id,
                         extra={"job_id": event.job_id})

        await retry_transient(f"webhook of job {event.job_id}: Redis", schedule,
                              first_delay=1.0, max_delay=30.0, also=UNAVAILABLE)

    # --- send ----------------------------------------------------------------------------

    async def send_due(self) -> None:
        """Poll the outbox and deliver what is due, a few at a time."""
        while True:
            room = self.max_sending - len(self._sending)
            due = [] if room <= 0 else await retry_transient(
                "webhook sender: Redis", functools.partial(self.outbox.claim_due, limit=room),
                first_delay=self.poll_seconds, max_delay=30.0, also=UNAVAILABLE)
            for item in due:
                task = asyncio.create_task(self._send(item))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            if not due:
                await asyncio.sleep(self.poll_seconds)

    async def _send(self, due: Due) -> None:
        state = self.state
        assert state.http is not None
        answer = await post_once(state.http, due.url, due.body, state.settings.webhook_secret,
                                 delivery_id=due.delivery_id, attempt=due.attempt,
                                 allowed=state.settings.webhook_allowed_networks,
                                 timeout=self.post_timeout)
        delay = retry_delay(state.settings.webhook_retry_delays, due.attempt)
        outcome: State
        if answer.ok:
            outcome, verb = "delivered", "delivered"
        elif answer.retry and delay is not None:
            outcome, verb = "retrying", f"retried in {delay:g}s"
        else:
            outcome, verb = "failed", "given up"
        metric: Any = state.metrics.webhooks
        metric.labels(outcome=outcome).inc()
        (log.info if outcome != "failed" else log.warning)(
            "webhook of job %s, attempt %d: %s; %s", due.job_id, due.attempt,
            answer.outcome, verb, extra={"job_id": due.job_id})
        try:
            await self.outbox.record(due, outcome, answer.outcome, status=answer.status,
                                     retry_in=delay or 0.0)
        except UNAVAILABLE as exc:  # the lease runs out and the delivery is due again
            log.warning("webhook of job %s: outcome not recorded (Redis: %s: %s); it is "
                        "tried again when its lease ends", due.job_id, type(exc).__name__,
                        exc)
