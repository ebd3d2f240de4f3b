"""The legacy bridge: every verdict also goes to a RabbitMQ topic exchange.

:class:`RabbitBridge` publishes each :class:`~schemas.VerdictEvent` to the durable topic
exchange ``mailsift.verdicts`` with routing key ``verdict.<verdict>.<reason>`` (for example
``verdict.undeliverable.mailbox_not_found``). Each message carries:

* body: the VerdictEvent JSON (``content_type="application/json"``), persistent
  (``delivery_mode=2``);
* headers ``{"job_id": ..., "schema_version": 1}``;
* ``message_id`` ``"<job_id>:<dedupe_key>:<checked_at>"`` (a ``sha256:`` digest of it when
  longer than AMQP's 255 bytes): the same verdict always has the same id, so a consumer can
  drop the duplicates that at-least-once delivery brings.

:meth:`RabbitBridge.publish` returns only once RabbitMQ took every message of the batch:
they go in one AMQP transaction (``tx_select``), and ``tx_commit`` returns when the broker
has them all, one round trip per batch instead of one confirm per message. While the
broker is away it reconnects with exponential backoff (0.2 s doubling up to
``max_backoff``, a warning logged once per distinct error) and re-publishes what was not
committed, so the Kafka event that carried the verdicts is not
acked before RabbitMQ has them. It raises only when cancelled, when the bridge is closed
under it (:class:`BridgeClosedError`), or for a clearly permanent error such as refused
credentials, an unknown vhost or an exchange declared with another type
(:class:`BridgeConfigError`).

pika's ``BlockingConnection`` is not thread-safe: the bridge owns one worker thread and every
pika object is created and used only there.

A legacy consumer binds its own durable queue to the exchange; ``*`` matches one word of the
routing key and ``#`` any number of them::

    import json
    import pika

    params = pika.URLParameters("amqp://guest:guest@127.0.0.1:15673/%2F")
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.exchange_declare("mailsift.verdicts", exchange_type="topic", durable=True)
    ch.queue_declare("crm.bounces", durable=True)
    ch.queue_bind("crm.bounces", "mailsift.verdicts", routing_key="verdict.undeliverable.*")

    def on_verdict(ch, method, props, body):
        event = json.loads(body)
        if not already_seen(props.message_id):  # redeliveries keep their message_id
            mark_bounced(event["email"], event["reason"])
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume("crm.bounces", on_verdict)
    ch.start_consuming()

Messages published while no queue is bound are dropped by RabbitMQ (that is how exchanges
work): declare and bind the queue before the verdicts it should receive are published.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pika
import pika.exceptions

from agents.outage import Backoff
from agents.ports import BridgeRefused
from schemas import VerdictEvent

__all__ = ["BridgeClosedError", "BridgeConfigError", "RabbitBridge", "routing_key",
           "message_id"]

log = logging.getLogger(__name__)

#: AMQP reply codes that retrying cannot fix: ACCESS_REFUSED, PRECONDITION_FAILED (e.g. the
#: exchange exists with another type), NOT_ALLOWED (unknown vhost), NOT_IMPLEMENTED
PERMANENT_REPLY_CODES = frozenset({403, 406, 530, 540})

FIRST_BACKOFF = 0.2
#: name prefix of the bridge's worker threads
THREAD_PREFIX = "mailsift-rabbit-bridge"


class BridgeConfigError(BridgeRefused):
    """RabbitMQ refuses the bridge for a reason that retrying cannot fix; one-line message."""


class BridgeClosedError(RuntimeError):
    """:meth:`RabbitBridge.publish` was called on, or interrupted by, a closed bridge."""


def routing_key(verdict: VerdictEvent) -> str:
    """``verdict.<verdict>.<reason>``; a dot inside either would add a word, so it becomes ``_``.

    >>> from schemas import VerdictEvent
    >>> routing_key(VerdictEvent(job_id="j", email="a@b.example", normalized=None,
    ...     verdict="undeliverable", reason="mailbox_not_found", dedupe_key="a@b.example",
    ...     attempt=1, checked_at="2024-01-01T00:00:00.000Z", evidence={}))
    'verdict.undeliverable.mailbox_not_found'
    """
    return f"verdict.{_word(verdict.verdict)}.{_word(verdict.reason)}"


def _word(value: str) -> str:
    return "".join("_" if c == "." or c.isspace() else c for c in value)[:100] or "_"


def message_id(verdict: VerdictEvent) -> str:
    """A stable id for one verdict: the same verdict re-published keeps the same id."""
    raw = f"{verdict.job_id}:{verdict.dedupe_key}:{verdict.checked_at}"
    if len(raw.encode()) <= 255:  # an AMQP short string
        return raw
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def _coalesce_output(channel: Any) -> None:
    """Join the frames queued on ``channel``'s connection into one buffer, so the commit
    sends a batch in one write instead of one per frame (three per message); on loopback
    the per-write cost in the kernel was most of the bridge's CPU. Does nothing when the
    pika internals it relies on (tested with pika 1.4) are not there."""
    impl = getattr(channel, "_impl", None)
    transport = getattr(getattr(impl, "connection", None), "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    if isinstance(buffers, collections.deque) and len(buffers) > 1:
        joined = b"".join(buffers)
        buffers.clear()
        buffers.append(joined)


@dataclass(frozen=True)
class _Message:
    """What one publish needs, as plain data (pika objects are made in the worker thread)."""

    routing_key: str
    body: bytes
    message_id: str
    job_id: str
    schema_version: int


@dataclass(frozen=True)
class _Attempt:
    """How far one attempt in the worker thread got."""

    confirmed: int  # messages[:confirmed] are confirmed by the broker
    error: BaseException | None = None  # the transient error that ended the attempt
    stale: bool = False  # it failed at once on a connection left from an earlier call


def _describe(exc: BaseException) -> str:
    """One line naming the error (pika's str() is empty or nested for some of them)."""
    if isinstance(exc, pika.exceptions.ConnectionClosed | pika.exceptions.ChannelClosed):
        text = f"({exc.reply_code}) {exc.reply_text}"
    else:
        inner = exc.args[0] if len(exc.args) == 1 else None
        if isinstance(inner, BaseException):
            # pika's connector errors wrap the socket error in ``.exception``
            root = getattr(inner, "exception", None)
            inner = root if isinstance(root, BaseException) else inner
            text = f"{type(inner).__name__}: {inner}"
        else:
            text = "; ".join(str(a) for a in exc.args) or repr(exc)
    return f"{type(exc).__name__}: {text}".replace("\n", " ")


class _PikaInWorkerToDebug(logging.Filter):
    """pika logs every failed connection attempt at ERROR. In the bridge's thread its records
    become DEBUG records of this module's logger: the bridge warns once per distinct error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.threadName or "").startswith(THREAD_PREFIX):
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("pika %s: %s", record.levelname, record.getMessage())
        return False


def _quiet_pika_in_worker() -> None:
    # pika logs every frame at DEBUG: never build those records (a few % of a worker's CPU)
    logging.getLogger("pika").setLevel(logging.INFO)
    flt = _PikaInWorkerToDebug()
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "pika" or name.startswith("pika.")) and isinstance(logger, logging.Logger):
            if not any(isinstance(f, _PikaInWorkerToDebug) for f in logger.filters):
                logger.addFilter(flt)


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, pika.exceptions.AuthenticationError
                  | pika.exceptions.ProbableAuthenticationError
                  | pika.exceptions.ProbableAccessDeniedError):
        return True
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker
                  | pika.exceptions.ChannelClosedByBroker):
        return exc.reply_code in PERMANENT_REPLY_CODES
    return False


class RabbitBridge:
    """Publish verdicts to a RabbitMQ topic exchange, one transaction per batch (module doc).

    ``url`` is an AMQP URL (``amqp://user:password@host:port/vhost``). Nothing connects
    before the first :meth:`publish`. Calls to :meth:`publish` are served one at a time, in
    order. Call :meth:`close` (or use ``async with``) when done.
    """

    def __init__(self, url: str, *, exchange: str = "mailsift.verdicts",
                 max_backoff: float = 10.0) -> None:
        try:
            self._params = pika.URLParameters(url)
        except Exception as exc:
            raise BridgeConfigError(f"invalid AMQP URL for the RabbitMQ bridge: {exc}") from None
        if self._params.blocked_connection_timeout is None:
            # a broker under a resource alarm stops reading: treat a long block as an outage
            self._params.blocked_connection_timeout = 30.0
        if not self._params.client_properties:
            self._params.client_properties = {"connection_name": "mailsift verdict bridge"}
        self._exchange = exchange
        self._max_backoff = max(max_backoff, FIRST_BACKOFF)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_PREFIX)
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()
        # touched only by the worker thread
        self._connection: Any = None
        self._channel: Any = None

    async def __aenter__(self) -> RabbitBridge:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def publish(self, verdicts: Sequence[VerdictEvent]) -> None:
        """Return once RabbitMQ confirmed every verdict; wait out outages (see module doc)."""
        if self._closed.is_set():
            raise BridgeClosedError("the RabbitMQ bridge is closed")
        messages = [
            _Message(routing_key(v), v.dumps(), message_id(v), v.job_id, v.schema_version)
            for v in verdicts
        ]
        if not messages:
            return
        async with self._lock:
            await self._publish_until_confirmed(messages)

    async def _publish_until_confirmed(self, messages: list[_Message]) -> None:
        loop = asyncio.get_running_loop()
        confirmed = 0
        backoff = Backoff(FIRST_BACKOFF, self._max_backoff)
        last_error: str | None = None
        retries = 0
        while True:
            if self._closed.is_set():
                raise BridgeClosedError(
                    f"the RabbitMQ bridge was closed with {len(messages) - confirmed} "
                    f"of {len(messages)} verdicts not confirmed")
            abort = threading.Event()
            try:
                attempt = await loop.run_in_executor(
                    self._executor, self._publish_sync, messages, confirmed, abort)
            except BaseException:
                # cancelled: the worker stops after the message in flight and keeps its
                # connection usable; a job not started yet is dropped by the executor
                abort.set()
                raise
            if attempt.confirmed > confirmed:
                backoff.reset()  # the broker was there: back off from the start again
            confirmed = attempt.confirmed
            if attempt.error is None:
                if last_error is not None:
                    log.info("RabbitMQ bridge: publishing again after %d retries", retries)
                return
            if attempt.stale:
                # the connection died while idle (broker restart, missed heartbeats):
                # reconnect at once, this is not an outage yet
                log.debug("RabbitMQ bridge: stale connection (%s); reconnecting",
                          _describe(attempt.error))
                continue
            text = _describe(attempt.error)
            if text != last_error:
                log.warning("RabbitMQ bridge: %s; %d of %d verdicts not confirmed yet, "
                            "retrying until it works", text, len(messages) - confirmed,
                            len(messages))
                last_error = text
            retries += 1
            delay = backoff.next()
            log.debug("RabbitMQ bridge: retry %d in %.1f s (%s)", retries, delay, text)
            try:
                await asyncio.wait_for(self._closed.wait(), delay)
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._disconnect_sync)
        finally:
            self._executor.shutdown(wait=False)

    # --- the worker thread ------------------------------------------------------------------

    def _publish_sync(self, messages: list[_Message], start: int,
                      abort: threading.Event) -> _Attempt:
        """Publish ``messages[start:]`` in one AMQP transaction; stop early when ``abort`` is
        set. ``tx_commit`` returns once the broker has taken all of them (persistent
        messages to durable queues included): one round trip per batch, not per message."""
        done = start
        reused = (self._channel is not None and self._connection is not None
                  and self._connection.is_open and self._channel.is_open)
        try:
            channel = self._channel if reused else self._connect_sync()
            # BlockingChannel.basic_publish writes the socket after every message (one poll
            # and three sends each); inside a transaction nothing needs to leave before the
            # commit, so the messages go through the channel underneath, which only queues
            # their frames, and tx_commit sends them all (about half the CPU per message)
            publish = getattr(channel, "_impl", channel).basic_publish
            for msg in messages[start:]:
                if abort.is_set():
                    break
                properties = pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,
                    headers={"job_id": msg.job_id, "schema_version": msg.schema_version},
                    message_id=msg.message_id,
                )
                publish(self._exchange, msg.routing_key, msg.body, properties)
            if abort.is_set():
                channel.tx_rollback()
                return _Attempt(done)
            _coalesce_output(channel)
            channel.tx_commit()
            return _Attempt(len(messages))
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                OSError) as exc:
            self._disconnect_sync()
            if _permanent(exc):
                raise BridgeConfigError(
                    f"RabbitMQ refused the verdict bridge ({self._where()}): "
                    f"{_describe(exc)}") from None
            return _Attempt(done, exc, stale=reused and done == start)
        except BaseException:
            # not an outage (a bug, e.g. a field pika cannot encode): start clean next time
            self._disconnect_sync()
            raise

    def _connect_sync(self) -> Any:
        self._disconnect_sync()
        self._connection = pika.BlockingConnection(self._params)
        channel = self._connection.channel()
        channel.exchange_declare(self._exchange, exchange_type="topic", durable=True)
        channel.tx_select()
        self._channel = channel
        return channel

    def _disconnect_sync(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception as exc:  # it is going away anyway
                log.debug("RabbitMQ bridge: closing the connection: %s", _describe(exc))

    def _where(self) -> str:
        p = self._params
        return f"user {p.credentials.username!r} at {p.host}:{p.port} vhost {p.virtual_host!r}"


_quiet_pika_in_worker()
