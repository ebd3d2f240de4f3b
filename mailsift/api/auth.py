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

import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from mailsift.api.errors import ApiError
from mailsift.settings import Settings

__all__ = ["PUBLIC_PATHS", "PAGE_PATHS", "SESSION_COOKIE", "Principal", "PRINCIPAL",
           "TokenBucket", "auth_middleware", "token_owner", "is_admin", "check_token",
           "session_principal", "principal_of_token"]

#: answered without a token (load balancers' health checks, API clients' discovery)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
#: the dashboard's pages (:mod:`mailsift.api.web`)
PAGE_PATHS = frozenset({"/", "/login", "/logout", "/favicon.ico"})
#: the cookie of a dashboard session (:mod:`sinks.redis_sessions`)
SESSION_COOKIE = "mailsift_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

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


def token_owner(token: str) -> str:
    """The fingerprint a token's jobs are kept under (SHA-256, 96 bits of it; never the
    token itself)."""
    return "tok_" + hashlib.sha256(token.encode()).hexdigest()[:24]


def is_admin(settings: Settings, token: str) -> bool:
    """Whether ``token`` is an admin token (compared in constant time with each)."""
    return any([hmac.compare_digest(token.encode(), t.encode())
                for t in settings.api_admin_tokens])


@dataclass(frozen=True)
class Principal:
    """Who a request is: the owner fingerprint of its token, and whether that token is
    an admin token (a bearer token's, or a dashboard session's)."""

    owner: str
    admin: bool = False


#: request key of the authenticated principal
PRINCIPAL = web.RequestKey("mailsift_principal", Principal)


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
    return check_token(config, token)


def check_token(config: Settings, token: str) -> str:
    """``token`` when it is one of the configured tokens, else the 401."""
    tokens = (*config.api_tokens, *config.api_admin_tokens)
    # compare with every token, in constant time per token
    matches = [hmac.compare_digest(token.encode(), t.encode()) for t in tokens]
    if not tokens or not any(matches):
        raise _unauthorized("invalid bearer token")
    return token


def principal_of_token(config: Settings, token: str) -> Principal:
    return Principal(token_owner(token), is_admin(config, token))


def session_principal(config: Settings, owner: str) -> Principal | None:
    """The principal of a session's owner, None once its token is no longer configured
    (a revoked token ends its sessions too)."""
    for token in (*config.api_admin_tokens, *config.api_tokens):
        if hmac.compare_digest(token_owner(token), owner):
            return principal_of_token(config, token)
    return None


def is_page(path: str) -> bool:
    """The dashboard's paths: its handlers check the session themselves."""
    return path in PAGE_PATHS or path.startswith(("/static/", "/jobs/"))


async def _from_session(request: web.Request, config: Settings) -> Principal:
    """The principal of the request's session cookie; unsafe methods must carry the
    session's CSRF token in ``X-CSRF-Token``."""
    # the dashboard's store of sessions lives in the app's state
    from mailsift.api.state import STATE

    session = await request.app[STATE].sessions.get(request.cookies[SESSION_COOKIE])
    principal = None if session is None else session_principal(config, session.owner)
    if session is None or principal is None:
        raise _unauthorized("the dashboard session has ended: log in again")
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get("X-CSRF-Token", ""), session.csrf):
        raise ApiError(403, "csrf", "missing or wrong X-CSRF-Token for this session")
    return principal


def auth_middleware(config: Settings) -> Middleware:
    """Middleware: 401 without a valid token (or dashboard session), 429 (with
    Retry-After) over the rate."""
    buckets = TokenBucket(config.api_rate, config.api_burst)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or is_page(request.path):
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None and SESSION_COOKIE in request.cookies:
            principal = await _from_session(request, config)
        else:
            principal = principal_of_token(config, authenticate(config, header))
        allowed, wait = buckets.take(principal.owner)
        if not allowed:
            raise ApiError(429, "rate_limited",
                           f"more than {config.api_rate:g} requests/s "
                           f"(burst {config.api_burst}) for this token",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
