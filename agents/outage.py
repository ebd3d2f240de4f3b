"""Waiting out a service outage: which failures are temporary (decided here, once, for
every stage, the CLI and the API), and the one retry helper, :func:`retry_transient`.

A temporary failure means "a service is unavailable right now" (Kafka, Redis, Postgres):
the work waits it out and is never dead-lettered. Anything else is the event's fault (it
is narrowed down to the one event and dead-lettered) or a bug.

Kafka errors follow aiokafka's ``retriable`` flag (a leader moving, a broker not ready, a
request timing out), plus the ones that mean the broker is gone (``KafkaConnectionError``,
``KafkaTimeoutError``: a produce that got no answer within its delivery timeout,
``KafkaUnavailableError``, a closed producer). A non-retriable error about the record
itself (too large, corrupt, an invalid topic) is the event's fault. Any other
non-retriable one (authorization, an unsupported version) is the configuration's: the
stage holds its events and says so in one warning line, for an operator to fix, rather
than dead-letter every one of them.

>>> from aiokafka.errors import (KafkaTimeoutError, MessageSizeTooLargeError,
...                              NotLeaderForPartitionError, TopicAuthorizationFailedError)
>>> [is_transient(e()) for e in (NotLeaderForPartitionError, KafkaTimeoutError,
...                              TopicAuthorizationFailedError, MessageSizeTooLargeError)]
[True, True, True, False]
>>> is_transient(ConnectionRefusedError()), is_transient(ValueError())
(True, False)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Backoff", "REDIS_BUSY_REPLIES", "is_transient", "retry_transient", "transient_errors",
           "event_faults"]

log = logging.getLogger(__name__)


@functools.cache
def transient_errors() -> tuple[type[BaseException], ...]:
    """Services unavailable right now (besides Kafka's, which :func:`is_transient` judges).

    Looked up on first use: the clients' modules are slow to import, and a CLI command
    that fails on its arguments should not pay for them."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, OSError]
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


@functools.cache
def event_faults() -> tuple[type[BaseException], ...]:
    """Kafka errors that are the record's fault (dead-lettered, never retried)."""
    from aiokafka import errors

    return (errors.MessageSizeTooLargeError, errors.RecordTooLargeError,
            errors.CorruptRecordException, errors.InvalidTopicError)


#: error replies of a Redis that cannot serve right now: a script running too long, a
#: replica not promoted yet, memory or disk full, a cluster failing over, loading its data
REDIS_BUSY_REPLIES = frozenset({"BUSY", "MISCONF", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
                                "NOREPLICAS", "LOADING", "READONLY", "OOM"})


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means "try again later" rather than "this event is bad".

    >>> from redis.exceptions import ReadOnlyError, ResponseError
    >>> [is_transient(e) for e in (ReadOnlyError("You can't write against a read only "
    ...     "replica."), ResponseError("BUSY Redis is busy running a script."),
    ...     ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))]
    [True, True, False]
    """
    from aiokafka.errors import KafkaError

    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False)) or not isinstance(exc, event_faults())
    return isinstance(exc, transient_errors()) or _redis_busy(exc)


def _redis_busy(exc: BaseException) -> bool:
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, redis.exceptions.ReadOnlyError | redis.exceptions.OutOfMemoryError):
        return True  # redis-py takes the code off these replies
    return (isinstance(exc, redis.exceptions.ResponseError)
            and str(exc).split(" ", 1)[0] in REDIS_BUSY_REPLIES)


class Backoff:
    """The delays of a loop that waits out a service: doubling from ``first`` up to
    ``most``; with ``jitter``, each one drawn from its upper half (so many waiters do not
    come back at the same moment). Every such loop of ours uses this one.

    >>> b = Backoff(0.2, 1.0)
    >>> [b.next() for _ in range(4)]
    [0.2, 0.4, 0.8, 1.0]
    >>> b.reset(); b.next()
    0.2
    """

    def __init__(self, first: float, most: float, *, jitter: bool = False) -> None:
        self.first, self.most, self.jitter = first, max(first, most), jitter
        self._delay = first

    def next(self) -> float:
        """The delay to wait now (and double the one after it)."""
        delay, self._delay = self._delay, min(self.most, self._delay * 2)
        return random.uniform(delay / 2, delay) if self.jitter else delay

    def reset(self) -> None:
        """The service answered: the next outage starts from ``first`` again."""
        self._delay = self.first

    async def sleep(self) -> None:
        await asyncio.sleep(self.next())


async def retry_transient(what: str, fn: Callable[[], Awaitable[Any]], *,
                          first_delay: float = 0.2, max_delay: float = 10.0,
                          also: tuple[type[BaseException], ...] = (),
                          give_up_after: float | None = None) -> Any:
    """Call ``fn`` until it does not fail with a transient error (logged once per kind;
    :func:`is_transient` decides which are).

    ``also`` names more exceptions to wait out (e.g. a sink's configuration error: better
    to hold the events and say so than to dead-letter every one of them).
    ``give_up_after`` (seconds) bounds the wait for callers with someone waiting on them
    (the CLI, an HTTP request): the last error is raised once it has passed. Stages wait
    as long as it takes.
    """
    backoff = Backoff(first_delay, max_delay)
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
            delay = backoff.next()
            await asyncio.sleep(delay if left is None else min(delay, left))
