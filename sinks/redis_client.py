"""The Redis client every Redis table uses, and the helpers for its replies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import DataError, RedisError, ResponseError

from agents.outage import is_transient

__all__ = ["UNAVAILABLE", "RedisRefused", "redis_client", "guarded", "refused", "as_int",
           "as_text"]

_T = TypeVar("_T")

#: Errors that mean "Redis did not answer" (redis-py wraps socket errors, but be safe).
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class RedisRefused(RuntimeError):
    """Redis refused a command as it will every time (see :func:`refused`): the message
    says which command and Redis's reply."""


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` is a reply Redis gives every time: a script that fails, a key of
    the wrong type, arguments it cannot take. Waiting it out would wait for good; an
    outage (a dropped connection, a Redis loading or failing over) is not one.

    >>> from redis.exceptions import ConnectionError, ReadOnlyError
    >>> [refused(e) for e in (ResponseError("ERR user_script:9: bad argument"),
    ...                       ReadOnlyError("replica"), ConnectionError("gone"))]
    [True, False, False]
    """
    return isinstance(exc, ResponseError | DataError) and not is_transient(exc)


def redis_client(url: str, *, max_connections: int = 64) -> redis.asyncio.Redis:
    """A client for ``url`` (``redis://host:port/db``) that returns bytes.

    Socket connect/read timeouts of 5 s, keepalive, a health check of idle connections
    every 30 s, and a short retry (3 times, 50-500 ms) of a command whose connection
    broke, so a restarted Redis is noticed quickly and a dead one fails within a second
    (redis-py's default retries 10 times, seconds in all).
    """
    # a blocking pool: when every connection is busy (hundreds of concurrent politeness
    # waits and job updates), wait for one instead of failing with "Too many connections"
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=False,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 3),
    )
    return redis.asyncio.Redis(connection_pool=pool)


async def guarded(aw: Awaitable[_T]) -> _T:
    """Await a redis-py call without losing a cancellation of the current task.

    redis-py sends every command under :func:`asyncio.wait_for`, which on Python 3.11
    returns the result, and drops the cancellation, when both arrive together; the caller
    would carry on as if never cancelled (a lease taken after its ``async with`` was
    abandoned, a timeout that never fires). Re-raise it here instead.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await aw
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError()
    return result


def as_int(value: Any) -> int:
    """An integer from a Redis reply (int, bytes or str)."""
    if isinstance(value, bytes):
        value = value.decode()
    return int(value)


def as_text(value: Any) -> str:
    """A string from a Redis reply (bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class ThrottledWarning:
    """Log a warning to ``logger`` at most once per ``interval`` seconds; the others go to
    debug."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.log = logger
        self.interval = interval
        self._last: float | None = None
        self._suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval:
            if self._suppressed:
                message += f" ({self._suppressed} similar messages suppressed)"
            self.log.warning(message, *args)
            self._last = now
            self._suppressed = 0
        else:
            self._suppressed += 1
            self.log.debug(message, *args)
