"""Run one pipeline stage over a Faust stream: batches of events, ordered acks, nothing lost.

Every agent of ``agents/`` is a :class:`~agents.ports.BatchHandler` run by :func:`run_stage`:

* the events a stream has ready (up to ``max_batch``, or what arrives within ``linger``
  seconds) go to the handler in one call, so per-event costs (a task, a Redis round trip, a
  produce wait, a database write) are paid once per batch; several batches run at once,
  with at most ``max_in_flight`` events in flight per partition
  (:class:`~streams.ackwindow.OrderedAckWindow`, which also acks in offset order);
* an event that is not what its topic promises gets a reason from the handler
  (:class:`~schemas.SchemaError` text) and goes to the dead-letter topic with it; a bug that
  raises is narrowed down to the one event at fault by handling the batch's events one at
  a time, and only that event is dead-lettered; the stage goes on. A stage whose events
  belong to jobs gives each of those its final verdict as well (``settle``), so the job
  still completes;
* a failure of the infrastructure (Kafka, Redis, Postgres unreachable) is retried with
  backoff (:func:`agents.outage.retry_transient`), and the events stay unacked until it
  succeeds: nothing is lost, nothing skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from agents.events import dead_letters
from agents.logcontext import STAGE
from agents.outage import retry_transient
from agents.ports import BatchHandler, Done, Outcome, Publisher, RawEvent, Record
from schemas import SchemaError
from streams.ackwindow import OrderedAckWindow, Ticket

if TYPE_CHECKING:
    from streams.metrics import WorkerMetrics

__all__ = ["run_stage", "Settle"]

log = logging.getLogger(__name__)

#: the records that account for events dead-lettered with their reasons (their verdicts)
Settle = Callable[[Sequence[tuple[RawEvent, str]]], list[Record]]


async def run_stage(
    stream: Any,
    handler: BatchHandler,
    *,
    publisher: Publisher,
    dead_letter_topic: str,
    max_in_flight: int,
    name: str,
    window: OrderedAckWindow[Any] | None = None,
    metrics: WorkerMetrics | None = None,
    max_batch: int = 500,
    linger: float = 0.005,
    settle: Settle | None = None,
) -> None:
    """Consume ``stream`` (a Faust stream) with ``handler`` until the stream ends.

    A batch is dispatched when it holds ``max_batch`` events, ``linger`` seconds after its
    first event, and at once when the window is full (its events hold the room the next
    one waits for). A Faust stream yields to the event loop between events, so a batch
    that did not wait at all would hold one event.
    """
    STAGE.set(name)  # for the log lines of the stage and the tasks it starts
    window = window or OrderedAckWindow(max_in_flight, lambda event: event.ack())
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    pending: list[tuple[RawEvent, Ticket, float]] = []
    timer: asyncio.Handle | None = None

    async def handle(events: Sequence[RawEvent], done: Done | None) -> list[Outcome]:
        first = events[0]
        try:
            outcomes = list(await retry_transient(
                f"{name} batch of {len(events)} from {first.source}",
                lambda: handler(events, done)))
            if len(outcomes) != len(events):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(events)} events")
            return outcomes
        except SchemaError as exc:
            if len(events) == 1:
                return [str(exc)]
        except Exception as exc:  # a bug must not stop the stage or lose the events
            if len(events) == 1:
                log.exception("%s failed on %s", name, first.source)
                return [f"{type(exc).__name__}: {exc}"]
        # narrow it down: each event alone, in order, so only the one at fault is dropped
        return [(await handle([event], None))[0] for event in events]

    async def settle_failed(settle: Settle, failed: Sequence[tuple[RawEvent, str]]) -> None:
        try:
            records = settle(failed)
            await retry_transient("verdicts of dead letters",
                                  lambda: publisher.publish_many(records))
        except Exception as exc:  # noqa: BLE001 - their dead letters are out: go on
            log.error("%s: %d dead-lettered events got no verdict: %s: %s", name,
                      len(failed), type(exc).__name__, exc)

    async def process(batch: list[tuple[RawEvent, Ticket, float]]) -> None:
        events = [event for event, _, _ in batch]

        def done(indexes: Iterable[int]) -> None:
            for i in indexes:
                window.complete(batch[i][1])

        outcomes = await handle(events, done)
        failed = [(event, why) for event, why in zip(events, outcomes, strict=True)
                  if why is not None]
        if failed:
            records = dead_letters(dead_letter_topic, failed)
            await retry_transient("dead-letter publish",
                                  lambda: publisher.publish_many(records))
            if settle is not None:
                await settle_failed(settle, failed)
        if metrics is not None:
            now = time.monotonic()
            metrics.stage_handled_many(name, [now - admitted for _, _, admitted in batch])
            for _ in failed:
                metrics.dead_letter(name)
        # not reached when cancelled (worker stopping): the events stay unacked
        for _, ticket, _ in batch:
            window.complete(ticket)

    def flush() -> None:
        nonlocal pending, timer
        if timer is not None:
            timer.cancel()
            timer = None
        if pending:
            batch, pending = pending, []
            task = loop.create_task(process(batch))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async for event in stream.noack().events():
        msg = event.message
        ticket = window.try_admit(msg.tp, msg.offset, event)
        if ticket is None:
            flush()  # what is held goes now: its events hold the room this one waits for
            ticket = await window.admit(msg.tp, msg.offset, event)
            if ticket is None:
                continue  # revoked while it waited: redelivered to the partition's owner
        if ticket.carried:
            continue  # done, or being done, for the partition's previous assignment here
        pending.append((RawEvent(msg.topic, msg.partition, msg.offset, msg.key, msg.value),
                        ticket, time.monotonic()))
        if len(pending) >= max_batch:
            flush()
        elif timer is None:
            timer = loop.call_later(linger, flush)
