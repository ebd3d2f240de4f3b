"""The DNS cache in Redis: a :class:`checks.dns.DnsCache` shared by every worker
(``SET … PX``); a Redis hiccup is a cache miss, never an error.

Key layout (``prefix`` defaults to ``"mailsift:"``): ``{prefix}{dns cache key}``, a string
holding the cached entry (``CachingResolver``'s key, e.g. ``mailsift:dns:example.com/MX``),
``PX`` = its TTL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio

from sinks.redis_client import ThrottledWarning as _ThrottledWarning
from sinks.redis_client import guarded as _guarded

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["RedisDnsCache"]


class RedisDnsCache:
    """A :class:`checks.dns.DnsCache` in Redis, shared by every worker.

    Values are stored with ``SET key value PX ttl_ms`` under ``prefix + key``; a ``ttl``
    of zero or less deletes the key. Redis errors never reach the caller: :meth:`get`
    answers None (a miss) and :meth:`set` does nothing, with a warning at most once a
    minute, so DNS keeps working when Redis does not. Each call gives Redis ``timeout``
    seconds; after a failure the cache is bypassed for ``retry_after`` seconds, so a dead
    Redis costs lookups nothing.

    Calls made in the same turn of the event loop share one round trip: the gets one
    ``MGET``, the sets one pipeline (a domain's MX, SPF, DMARC and DKIM lookups all start
    together, and so do those of the domains of one stage batch).
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        prefix: str = "mailsift:",
        timeout: float = 1.0,
        retry_after: float = 5.0,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.redis = redis
        self.prefix = prefix
        self.timeout = timeout
        self.retry_after = retry_after
        self._down_until = 0.0
        self._warn = _ThrottledWarning(log)
        self._gets: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._sets: list[tuple[str, bytes, float, asyncio.Future[None]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def _bypassed(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_after
        self._warn(
            "DNS cache: Redis %s failed (%s: %s); bypassing the cache for %gs",
            what, type(exc).__name__, exc, self.retry_after,
        )

    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when absent, expired or Redis is unavailable."""
        if self._bypassed():
            return None
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._gets.append((key, future))
        if len(self._gets) == 1:
            asyncio.get_running_loop().call_soon(self._send_gets)
        return await future

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (≤ 0 deletes the key)."""
        if self._bypassed():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sets.append((key, value, ttl, future))
        if len(self._sets) == 1:
            asyncio.get_running_loop().call_soon(self._send_sets)
        await future

    def _send_gets(self) -> None:
        asked, self._gets = self._gets, []
        self._run(self._get_many(asked))

    def _send_sets(self) -> None:
        asked, self._sets = self._sets, []
        self._run(self._set_many(asked))

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._sending.add(task)  # referenced until done
        task.add_done_callback(self._sending.discard)

    async def _get_many(self, asked: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        values: list[Any] = [None] * len(asked)
        try:
            async with asyncio.timeout(self.timeout):
                values = await _guarded(self.redis.mget([self.prefix + k for k, _ in asked]))
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss, never an error
            self._failed("get", exc)
        finally:
            for (_, future), value in zip(asked, values, strict=True):
                if not future.done():
                    future.set_result(None if value is None else
                                      value.encode() if isinstance(value, str) else
                                      bytes(value))

    async def _set_many(self, asked: list[tuple[str, bytes, float, asyncio.Future[None]]]
                        ) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                pipe = self.redis.pipeline(transaction=False)
                for key, value, ttl, _ in asked:
                    if ttl <= 0:
                        pipe.delete(self.prefix + key)
                    else:
                        pipe.set(self.prefix + key, value, px=max(1, math.ceil(ttl * 1000)))
                await _guarded(pipe.execute())
        except Exception as exc:  # noqa: BLE001 - a cache failure loses an entry, no more
            self._failed("set", exc)
        finally:
            for *_, future in asked:
                if not future.done():
                    future.set_result(None)
