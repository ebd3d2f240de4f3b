"""Run one pipeline stage over a Faust stream: concurrent work, ordered acks, no lost events.

Every agent of ``agents/`` is a :class:`Handler` run by :func:`run_stage`:

* each event is handled in its own task, at most ``max_in_flight`` per partition
  (:class:`~streams.ackwindow.OrderedAckWindow`, which also acks in offset order);
* an event that is not what its topic promises (:class:`~schemas.SchemaError`, or a bug
  that raises) goes to the dead-letter topic with the error, and the stage goes on;
* a failure of the infrastructure (Kafka, Redis, Postgres unreachable) is retried with
  backoff, and the event stays unacked until it succeeds: nothing is lost, nothing skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from schemas import DeadLetter, SchemaError
from streams.ackwindow import OrderedAckWindow

if TYPE_CHECKING:
    from streams.metrics import WorkerMetrics

__all__ = ["Handler", "Publisher", "run_stage", "TRANSIENT_ERRORS", "transient_errors"]

log = logging.getLogger(__name__)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "a service is unavailable right now", not "this event is bad"."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, OSError]
    try:
        from aiokafka.errors import KafkaError

        errors.append(KafkaError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                   redis.exceptions.BusyLoadingError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import asyncpg

        errors += [asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                   asyncpg.InterfaceError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


TRANSIENT_ERRORS = transient_errors()


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Produce and wait until the broker has the record."""
        ...


class Handler(Protocol):
    async def __call__(self, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None) -> None:
        """Process one raw event; raise SchemaError for a malformed one."""
        ...


async def retry_transient(what: str, fn: Callable[[], Awaitable[Any]], *,
                          first_delay: float = 0.2, max_delay: float = 10.0,
                          also: tuple[type[BaseException], ...] = ()) -> Any:
    """Call ``fn`` until it does not fail with a transient error (logged once per kind).

    ``also`` names more exceptions to wait out (e.g. a sink's configuration error: better
    to hold the events and say so than to dead-letter every one of them).
    """
    delay = first_delay
    last: str | None = None
    while True:
        try:
            return await fn()
        except (*TRANSIENT_ERRORS, *also) as exc:
            text = f"{type(exc).__name__}: {exc}"
            if text != last:
                log.warning("%s: %s; retrying until it works", what, text)
                last = text
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


async def run_stage(
    stream: Any,
    handler: Handler,
    *,
    publisher: Publisher,
    dead_letter_topic: str,
    max_in_flight: int,
    name: str,
    window: OrderedAckWindow[Any] | None = None,
    metrics: WorkerMetrics | None = None,
) -> None:
    """Consume ``stream`` (a Faust stream) with ``handler`` until the stream ends."""
    window = window or OrderedAckWindow(max_in_flight, lambda event: event.ack())
    tasks: set[asyncio.Task[None]] = set()

    async def process(event: Any, ticket: Any) -> None:
        started = time.monotonic()
        msg = event.message
        args = (msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        try:
            await retry_transient(f"{name} {msg.topic}[{msg.partition}]@{msg.offset}",
                                  lambda: handler(*args))
        except SchemaError as exc:
            await _dead_letter(publisher, dead_letter_topic, args, str(exc))
            if metrics is not None:
                metrics.dead_letter(name)
        except Exception as exc:  # a bug must not stop the stage or lose the event
            log.exception("%s failed on %s[%s]@%s", name, *args[:3])
            await _dead_letter(publisher, dead_letter_topic, args,
                               f"{type(exc).__name__}: {exc}")
            if metrics is not None:
                metrics.dead_letter(name)
        if metrics is not None:
            metrics.stage_handled(name, time.monotonic() - started)
        # not reached when cancelled (worker stopping): the event stays unacked
        window.complete(ticket)

    async for event in stream.noack().events():
        msg = event.message
        ticket = await window.admit(msg.tp, msg.offset, event)
        task = asyncio.create_task(process(event, ticket))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _dead_letter(publisher: Publisher, topic: str,
                       args: tuple[str, int, int, bytes | None, bytes | None],
                       error: str) -> None:
    src_topic, partition, offset, key, value = args
    record = DeadLetter.of(src_topic, partition, offset, key, value, error)
    log.warning("dead letter from %s[%s]@%s: %s", src_topic, partition, offset, error)
    await retry_transient("dead-letter publish",
                          lambda: publisher.publish(topic, key, record.dumps()))
