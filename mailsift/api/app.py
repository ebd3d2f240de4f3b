"""The aiohttp application of the API: routes, middlewares, background tasks.

Middlewares, outermost first: metrics (count and time everything), errors (the JSON
envelope), auth (bearer token, then the per-token rate limit). Background tasks: the
webhook dispatcher and the dead-letter counter; both survive Kafka outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from mailsift.api import handlers, ops, suppressions
from mailsift.api import web as web_pages
from mailsift.api.auth import auth_middleware
from mailsift.api.errors import error_middleware
from mailsift.api.metrics import ApiMetrics, metrics_middleware
from mailsift.api.openapi import openapi_document
from mailsift.api.state import STATE, ApiState, JobRegistry
from mailsift.api.webhook_dispatch import WebhookDispatcher
from mailsift.api.webhooks import GuardedResolver
from mailsift.settings import Settings, SettingsError

__all__ = ["create_app", "DISPATCHER", "DEAD_LETTERS"]

log = logging.getLogger("mailsift.api")

DISPATCHER = web.AppKey("mailsift_webhook_dispatcher", WebhookDispatcher)
DEAD_LETTERS = web.AppKey("mailsift_dead_letters", ops.DeadLetterCounter)


def _require(settings: Settings) -> None:
    if not settings.redis_url:
        raise SettingsError("MAILSIFT_REDIS_URL: the API needs Redis (job status), "
                            "got an empty value")
    if not settings.database_url:
        raise SettingsError("MAILSIFT_DATABASE_URL: the API needs Postgres (results), "
                            "got an empty value")


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``."""
    return web.json_response(openapi_document())


def create_app(settings: Settings, *,
               dead_letter_interval: float = ops.DEAD_LETTER_SCAN_SECONDS
               ) -> web.Application:
    """The API application for ``settings`` (the pipeline's and the API's own).

    Raises :class:`~mailsift.settings.SettingsError` when Redis or Postgres is not
    configured (the API cannot work without them).
    """
    # aiokafka is slow to import: only what may rebuild from the topics loads it
    # the services' clients are slow to import: only what uses them loads them
    from sinks.postgres import PostgresSink
    from sinks.redis_client import redis_client
    from sinks.redis_daily import DailyAllowance
    from sinks.redis_sessions import RedisSessions
    from sinks.redis_webhooks import RedisWebhookOutbox
    from streams.job_rebuild import rebuilder

    _require(settings)
    metrics = ApiMetrics()
    client = redis_client(settings.redis_url)
    state = ApiState(settings=settings, metrics=metrics,
                     sink=PostgresSink(settings.database_url, max_connections=8),
                     redis=client, jobs=JobRegistry(client, prefix=settings.redis_prefix,
                                                    rebuild=rebuilder(settings),
                                                    ttl_seconds=settings.job_ttl_seconds()),
                     # a claimed delivery is due again after 60 s (POSTs time out at 10)
                     outbox=RedisWebhookOutbox(client, prefix=settings.redis_prefix,
                                               lease_seconds=60.0,
                                               ttl_seconds=settings.job_ttl_seconds()),
                     allowance=DailyAllowance(client, prefix=settings.redis_prefix),
                     sessions=RedisSessions(client, prefix=settings.redis_prefix,
                                            ttl_seconds=settings.api_session_hours * 3600))
    app = web.Application(
        client_max_size=settings.api_max_body,
        middlewares=[metrics_middleware(metrics), error_middleware, auth_middleware(settings)],
    )
    app[STATE] = state
    app[ops.HEALTH_CACHE] = {}
    app[DISPATCHER] = WebhookDispatcher(state)
    app[DEAD_LETTERS] = ops.DeadLetterCounter(state, interval=dead_letter_interval)
    app.router.add_post("/v1/jobs", handlers.submit_job)
    app.router.add_get("/v1/jobs", handlers.list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", handlers.job_status)
    app.router.add_delete("/v1/jobs/{job_id}", handlers.delete_job)
    app.router.add_get("/v1/jobs/{job_id}/results", handlers.job_results)
    app.router.add_post("/v1/verify", handlers.verify)
    app.router.add_get("/v1/suppressions", suppressions.list_suppressions)
    app.router.add_post("/v1/suppressions", suppressions.add_suppressions)
    app.router.add_delete("/v1/suppressions/{entry}", suppressions.remove_suppression)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get("/openapi.json", openapi)
    web_pages.add_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the HTTP client and the background tasks; stop and close everything."""
    state = app[STATE]
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(state.settings, state.settings.webhook_allowed_networks),
        limit=50)
    state.http = aiohttp.ClientSession(connector=connector, trust_env=False)
    tasks = [asyncio.create_task(app[DISPATCHER].run(), name="webhook-dispatcher"),
             asyncio.create_task(app[DEAD_LETTERS].run(), name="dead-letter-counter")]
    try:
        yield
    finally:
        # lists accepted with a 202 get MAILSIFT_API_DRAIN_SECONDS to finish submitting;
        # those still going after it are marked failed (their spool files go with them)
        drain = state.settings.api_drain_seconds
        if state.background and drain > 0:
            log.info("waiting up to %g s for %d list(s) still being submitted", drain,
                     len(state.background))
            await asyncio.wait(set(state.background), timeout=drain)
        tasks += list(state.background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await state.http.close()
        await state.sink.close()
        await state.redis.aclose()
