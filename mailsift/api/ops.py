"""Operations endpoints: ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, and the
dead-letter counter.

``/healthz`` is liveness: 200 while the process serves. ``/readyz`` asks Kafka (metadata),
Redis (``PING``) and Postgres (``SELECT 1``) at once, each within 3 s, and lists each one;
200 when all answer, else 503. Its answer is cached for one second so a busy load
balancer does not open a Kafka connection per probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mailsift.api.state import STATE, ApiState
from mailsift.settings import Settings

__all__ = ["healthz", "readyz", "metrics", "DeadLetterCounter", "DEAD_LETTER_SCAN_SECONDS",
           "HEALTH_CACHE"]

log = logging.getLogger("mailsift.api")

HEALTH_TIMEOUT = 3.0
DEAD_LETTER_SCAN_SECONDS = 60.0
HEALTH_CACHE = web.AppKey("mailsift_health_cache", dict)


async def _kafka(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    # aiokafka is slow to import: only the commands that talk to Kafka load it
    from streams.topics import bootstrap_servers

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings),
                                request_timeout_ms=int(HEALTH_TIMEOUT * 1000))
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


async def _check(probe: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(probe(), HEALTH_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure means "does not answer"
        return f"error: {type(exc).__name__}"
    return "ok"


async def health(state: ApiState) -> dict[str, Any]:
    """``{"status": "ok"|"unavailable", "services": {"kafka": "ok"|"error: …", …}}``."""
    async def postgres() -> None:
        await state.sink.ping()

    async def redis() -> None:
        await state.redis.ping()

    kafka, red, pg = await asyncio.gather(_check(lambda: _kafka(state.settings)),
                                          _check(redis), _check(postgres))
    services = {"kafka": kafka, "redis": red, "postgres": pg}
    ok = all(v == "ok" for v in services.values())
    return {"status": "ok" if ok else "unavailable", "services": services}


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the API serves (whether its services answer is ``/readyz``)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when Kafka, Redis and Postgres answer, else 503; each service listed."""
    cache = request.app[HEALTH_CACHE]
    now = time.monotonic()
    if cache.get("at", -10.0) + 1.0 < now:
        cache["body"] = await health(request.app[STATE])
        cache["at"] = time.monotonic()
    body = cache["body"]
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; addresses by verdict are counted in Postgres now."""
    state = request.app[STATE]
    try:
        state.metrics.set_verdicts(await state.sink.verdict_totals())
    except Exception as exc:  # keep serving the other metrics; the gauge stays as it was
        log.warning("metrics: cannot count verdicts in Postgres: %s: %s",
                    type(exc).__name__, exc)
    return web.Response(body=state.metrics.render(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


class DeadLetterCounter:
    """Counts the dead-letters topic by reading it: all of it once, then what is new.

    Reading is the only reliable count (Tansu's end offsets are per produced batch). One
    consumer (no group) stays assigned to the topic; every ``interval`` seconds it reads
    until nothing arrives for a moment and sets ``mailsift_dead_letter_records``.
    """

    def __init__(self, state: ApiState, *, interval: float = DEAD_LETTER_SCAN_SECONDS,
                 idle: float = 1.0) -> None:
        self.state = state
        self.interval = interval
        self.idle = idle
        self.count = 0
        self.scans = 0

    async def run(self) -> None:
        """Scan forever; when Kafka is away, start over at the next interval."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dead-letter count: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval)

    async def _consume(self) -> None:
        # aiokafka is slow to import: only the commands that talk to Kafka load it
        from aiokafka import AIOKafkaConsumer

        from agents.topics import TopicNames
        from streams.client import assign_from_start, stop_consumer, until_idle
        from streams.topics import bootstrap_servers

        settings = self.state.settings
        topic = TopicNames.from_settings(settings).dead_letters
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings),
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=200)
        try:
            await consumer.start()  # inside: a cancelled start is stopped too
            tps = await assign_from_start(consumer, topic)
            self.count = 0  # a new consumer reads from the beginning
            if not tps:  # no topic yet: nothing to count; look again next interval
                self.scans += 1
                self.state.metrics.dead_letters.set(0)
                return
            while True:
                async for _ in until_idle(consumer, tps, idle=self.idle):
                    self.count += 1
                self.scans += 1
                self.state.metrics.dead_letters.set(self.count)
                await asyncio.sleep(self.interval)
        finally:
            await stop_consumer(consumer)
