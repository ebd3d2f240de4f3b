"""Bearer-token authentication and a per-token rate limit (token bucket).

Tokens come from ``MAILSIFT_API_TOKENS`` and ``MAILSIFT_API_ADMIN_TOKENS`` (what each
may see: :mod:`mailsift.api.access`). With none configured, every endpoint except
``/healthz``, ``/readyz`` and ``/openapi.json`` answers 401.

The rate limit is in process: each API instance allows ``MAILSIFT_API_RATE`` requests per
second per token, with bursts up to ``MAILSIFT_API_BURST``. Behind a load balancer with
N instances the effective limit is up to N times that; a shared limit would keep the
buckets in Redis (one Lua script per request, like ``sinks.redis_politeness``).

>>> bucket = TokenBucket(rate=1.0, burst=2)
>>> [bucket.take("t", now=0.0)[0] for _ in range(3)]
[True, True, False]
>>> bucket.take("t", now=0.0)[1]
1.0
>>> bucket.take("t", now=1.0)[0]
True
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from mailsift.api.errors import ApiError
from mailsift.settings import Settings

__all__ = ["PUBLIC_PATHS", "TokenBucket", "auth_middleware"]

#: answered without a token (load balancers' health checks, API clients' discovery)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
#: request key of the authenticated token
TOKEN = web.RequestKey("mailsift_token", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenBucket:
    """One bucket per key: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, *, now: float | None = None) -> tuple[bool, float]:
        """Take one token: (allowed, seconds until one is available when not)."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, (1.0 - tokens) / self.rate


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message,
                    headers={"WWW-Authenticate": 'Bearer realm="mailsift"'})


def authenticate(config: Settings, header: str | None) -> str:
    """The token of an ``Authorization`` header, or raise the 401 :class:`ApiError`."""
    tokens = (*config.api_tokens, *config.api_admin_tokens)
    if not tokens:
        raise _unauthorized("this API has no tokens configured (MAILSIFT_API_TOKENS)")
    if not header:
        raise _unauthorized("missing 'Authorization: Bearer <token>' header")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("expected 'Authorization: Bearer <token>'")
    # compare with every token, in constant time per token
    matches = [hmac.compare_digest(token.encode(), t.encode()) for t in tokens]
    if not any(matches):
        raise _unauthorized("invalid bearer token")
    return token


def auth_middleware(config: Settings) -> Middleware:
    """Middleware: 401 without a valid token, 429 (with Retry-After) over the rate."""
    buckets = TokenBucket(config.api_rate, config.api_burst)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        token = authenticate(config, request.headers.get("Authorization"))
        allowed, wait = buckets.take(token)
        if not allowed:
            raise ApiError(429, "rate_limited",
                           f"more than {config.api_rate:g} requests/s "
                           f"(burst {config.api_burst}) for this token",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        request[TOKEN] = token
        return await handler(request)

    return middleware
