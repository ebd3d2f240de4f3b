"""Run one pipeline stage over a Faust stream: batches of events, ordered acks, nothing lost.

Every agent of ``agents/`` is a :class:`BatchHandler` run by :func:`run_stage`:

* the events a stream has ready (up to ``max_batch``, or what arrives within ``linger``
  seconds) go to the handler in one call, so per-event costs (a task, a Redis round trip, a
  produce wait, a database write) are paid once per batch; several batches run at once,
  with at most ``max_in_flight`` events in flight per partition
  (:class:`~streams.ackwindow.OrderedAckWindow`, which also acks in offset order);
* an event that is not what its topic promises gets a reason from the handler
  (:class:`~schemas.SchemaError` text) and goes to the dead-letter topic with it; a bug that
  raises is narrowed down to the one event at fault by handling the batch's events one at
  a time, and only that event is dead-lettered; the stage goes on;
* a failure of the infrastructure (Kafka, Redis, Postgres unreachable) is retried with
  backoff (:func:`retry_transient`), and the events stay unacked until it succeeds: nothing
  is lost, nothing skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from schemas import DeadLetter, SchemaError
from streams.ackwindow import OrderedAckWindow, Ticket
from streams.errors import is_transient

if TYPE_CHECKING:
    from streams.metrics import WorkerMetrics

__all__ = ["BatchHandler", "Done", "Outcome", "Publisher", "RawEvent", "Record", "run_stage",
           "retry_transient", "dead_letters",
           "decode_each"]

log = logging.getLogger(__name__)
T = TypeVar("T")




@dataclass(frozen=True, slots=True)
class RawEvent:
    """One consumed Kafka record, as the handlers see it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def source(self) -> str:
        """``topic:partition:offset``, the event's address in the log.

        >>> RawEvent("submissions", 3, 17, None, b"{}").source
        'submissions:3:17'
        """
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce; ``partition`` None lets the key choose it."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    #: ``(verdict, reason)`` of a ``verdicts`` record, for the metrics (saves a decode)
    verdict: tuple[str, str] | None = None


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Produce one record and wait until the broker has it."""
        ...

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Produce every record (in order per partition) and wait until the broker has them
        all: one wait for the batch, not one per record."""
        ...


#: what a handler says of one event: None when it is done, else why it is malformed
Outcome = str | None
#: a handler may say early that some events of its batch (by index) are done (None)
Done = Callable[[Iterable[int]], None]


class BatchHandler(Protocol):
    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> Sequence[Outcome]:
        """Handle ``events`` (consecutive events of one stream) and say, per event, None or
        why it is malformed. Wait out transient failures, or raise them (the batch is then
        handled again). A batch's events are handed over in offset order per partition.

        ``done(indexes)`` may be called for events finished before the rest of the batch
        (their outcome is None), so they make room in the stage's window at once."""
        ...


async def retry_transient(what: str, fn: Callable[[], Awaitable[Any]], *,
                          first_delay: float = 0.2, max_delay: float = 10.0,
                          also: tuple[type[BaseException], ...] = (),
                          give_up_after: float | None = None) -> Any:
    """Call ``fn`` until it does not fail with a transient error (logged once per kind;
    :func:`streams.errors.is_transient` decides which are).

    ``also`` names more exceptions to wait out (e.g. a sink's configuration error: better
    to hold the events and say so than to dead-letter every one of them).
    ``give_up_after`` (seconds) bounds the wait for callers with someone waiting on them
    (the CLI, an HTTP request): the last error is raised once it has passed. Stages wait
    as long as it takes.
    """
    delay = first_delay
    last: str | None = None
    loop = asyncio.get_running_loop()
    deadline = None if give_up_after is None else loop.time() + give_up_after
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not (is_transient(exc) or isinstance(exc, also)):
                raise
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise
            text = str(exc)
            if not text.startswith(type(exc).__name__):
                text = f"{type(exc).__name__}: {text}"
            if text != last:
                until = ("until it works" if give_up_after is None
                         else f"for up to {give_up_after:g} s")
                log.warning("%s: %s; retrying %s", what, text, until)
                last = text
            await asyncio.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, max_delay)


def decode_each(events: Sequence[RawEvent], outcomes: list[Outcome],
                decode: Callable[[bytes | None], T], *, topic: str | None = None
                ) -> list[tuple[int, T]]:
    """``(index, record)`` for each event (of ``topic`` only, when given) that ``decode``
    accepts; a malformed one gets the :class:`~schemas.SchemaError` text as its outcome.

    >>> outcomes: list[Outcome] = [None, None]
    >>> def number(raw: bytes | None) -> int:
    ...     if not raw or not raw.isdigit():
    ...         raise SchemaError("not a number")
    ...     return int(raw)
    >>> events = [RawEvent("t", 0, 0, None, b"7"), RawEvent("t", 0, 1, None, b"x")]
    >>> decode_each(events, outcomes, number), outcomes
    ([(0, 7)], [None, 'not a number'])
    """
    out = []
    for i, event in enumerate(events):
        if topic is not None and event.topic != topic:
            continue
        try:
            out.append((i, decode(event.value)))
        except SchemaError as exc:
            outcomes[i] = str(exc)
    return out


def dead_letters(topic: str, failed: Sequence[tuple[RawEvent, str]]) -> list[Record]:
    """The dead-letter records of ``(event, why)`` pairs (each logged in one line)."""
    records = []
    for event, why in failed:
        log.warning("dead letter from %s: %s", event.source, why)
        letter = DeadLetter.of(event.topic, event.partition, event.offset, event.key,
                               event.value, why)
        records.append(Record(topic, event.key, letter.dumps()))
    return records


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
) -> None:
    """Consume ``stream`` (a Faust stream) with ``handler`` until the stream ends.

    A batch is dispatched when it holds ``max_batch`` events, ``linger`` seconds after its
    first event, and at once when the window is full (its events hold the room the next
    one waits for). A Faust stream yields to the event loop between events, so a batch
    that did not wait at all would hold one event.
    """
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
