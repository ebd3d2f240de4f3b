"""JSON errors: every non-2xx answer is ``{"error": {"code": "...", "message": "..."}}``.

Handlers raise :class:`ApiError`; :func:`error_middleware` turns it, aiohttp's own HTTP
exceptions (unknown route, wrong method, body too large) and "a service did not answer"
into that envelope.

>>> ApiError(404, "not_found", "no job 'x'").body()
{'error': {'code': 'not_found', 'message': "no job 'x'"}}
>>> code_for(415)
'unsupported_media_type'
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

__all__ = ["ApiError", "error_middleware", "json_error", "code_for", "UNAVAILABLE", "STREAMING"]

log = logging.getLogger("mailsift.api")

#: set on a request once its streamed response has started (errors then drop the connection)
STREAMING = web.RequestKey("mailsift_streaming", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "Kafka, Redis or Postgres did not answer" (→ 503)."""
    import asyncpg
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    # streams.worker imports this module: a top-level import would be a cycle
    from streams.worker import KafkaUnavailable

    return (KafkaUnavailable, KafkaError, RedisError, asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError, asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.TooManyConnectionsError, OSError, TimeoutError)


UNAVAILABLE: tuple[type[BaseException], ...] = _unavailable_errors()

_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
          405: "method_not_allowed", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited",
          500: "internal", 503: "unavailable", 504: "timeout"}


def code_for(status: int) -> str:
    """The error code used for ``status`` when the handler gave none."""
    if status in _CODES:
        return _CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable ``code``, a one-line ``message``."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def json_error(status: int, code: str, message: str, *,
               headers: Mapping[str, str] | None = None) -> web.Response:
    """An error answer as a response (for code that returns rather than raises)."""
    return ApiError(status, code, message, headers=headers).response()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every failure becomes the JSON error envelope."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() in {"allow", "retry-after", "www-authenticate"}}
        message = exc.reason if exc.status != 404 else f"no route {request.path!r}"
        if exc.status == 413:
            # mailsift.api.state imports this module: a top-level import would be a cycle
            from mailsift.api.state import STATE

            message = f"request body larger than {request.app[STATE].settings.api_max_body} bytes"
        return json_error(exc.status, code_for(exc.status), message, headers=headers)
    except UNAVAILABLE as exc:
        if request.get(STREAMING):
            raise  # headers are sent: only dropping the connection tells the client
        log.warning("%s %s: a service did not answer: %s: %s", request.method, request.path,
                    type(exc).__name__, exc)
        return json_error(503, "unavailable",
                          f"a backing service did not answer ({type(exc).__name__}); "
                          "retry later")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        if request.get(STREAMING):
            raise
        return json_error(500, "internal", "internal error (logged)")
