"""``GET /readyz`` of a worker: ready only when it can do its work.

Ready means: it has joined the consumer group (it holds a generation and is not in the
middle of a rebalance), and Redis (``PING``) and Postgres (``SELECT 1``, when configured)
answer, each within 3 s. ``/healthz`` stays liveness: the process serves. The answer is
cached for a second, so a busy probe does not open a Postgres connection per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.ports import Services

__all__ = ["install_readiness", "readiness"]

CHECK_TIMEOUT = 3.0


async def _check(probe: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"
        return f"error: {type(exc).__name__}"
    return "ok"


async def readiness(app: Any, services: Services) -> dict[str, Any]:
    """``{"status": "ready"|"not ready", "checks": {...}}`` for the worker ``app``."""
    generation = getattr(app, "consumer_generation_id", None)
    joined = generation is not None and generation >= 0 and not app.rebalancing
    checks: dict[str, str] = {"group": "joined" if joined else "joining"}

    async def redis() -> None:
        await services.redis.ping()

    async def postgres() -> None:
        import asyncpg

        conn = await asyncpg.connect(services.settings.database_url, timeout=CHECK_TIMEOUT)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    probes: dict[str, Callable[[], Awaitable[Any]]] = {}
    if services.redis is not None:
        probes["redis"] = redis
    if services.settings.database_url:
        probes["postgres"] = postgres
    results = await asyncio.gather(*(_check(p) for p in probes.values()))
    checks.update(zip(probes, results, strict=True))
    ready = joined and all(v == "ok" for k, v in checks.items() if k != "group")
    return {"status": "ready" if ready else "not ready", "checks": checks}


def install_readiness(app: Any, services: Services) -> None:
    """Add ``GET /readyz`` to the Faust app's web server (200 when ready, else 503)."""
    from faust import web

    cache: dict[str, Any] = {"at": -10.0}

    @app.page("/readyz")  # type: ignore[untyped-decorator]
    async def mailsift_readyz(self: web.View, request: web.Request) -> web.Response:
        if cache["at"] + 1.0 < time.monotonic():
            cache["body"] = await readiness(app, services)
            cache["at"] = time.monotonic()
        body = cache["body"]
        return self.json(body, status=200 if body["status"] == "ready" else 503)
