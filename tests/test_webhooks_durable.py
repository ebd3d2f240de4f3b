"""Durable webhooks (#9): the outbox in the real Redis, and a delivery end to end.

* The outbox: scheduled once, leased on claim (an API that dies between the claim and the
  POST loses nothing), a late outcome never overrides a later claim.
* End to end: a job submitted through the API completes while no API runs; an API started
  later delivers its webhook, to a receiver that fails for 2 minutes, exactly once by
  delivery id, and ``GET /v1/jobs/{id}`` shows every attempt.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from mailsift.api.app import DISPATCHER, create_app
from mailsift.settings import Settings
from sinks.redis_client import redis_client
from sinks.redis_webhooks import LEGACY_SENT_PREFIX, RedisWebhookOutbox
from tests.pipeline_support import (
    WorkerProcess,
    dedupe_key,
    pipeline_env,
    running_world,
    settings_for,
    wait_for_job,
    with_env,
)

pytestmark = [pytest.mark.stack, pytest.mark.asyncio]

TOKEN = "test-" + uuid.uuid4().hex
SECRET = "whsec-" + uuid.uuid4().hex


@pytest_asyncio.fixture
async def outbox(stack: Settings) -> AsyncIterator[RedisWebhookOutbox]:
    client = redis_client(stack.redis_url)
    prefix = f"mailsift-t{uuid.uuid4().hex[:10]}:"
    try:
        yield RedisWebhookOutbox(client, prefix=prefix, lease_seconds=1.0)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_delivery_is_scheduled_once(outbox: RedisWebhookOutbox) -> None:
    assert await outbox.schedule("j1", "http://127.0.0.1:9/hook", b"{}")
    assert not await outbox.schedule("j1", "http://127.0.0.1:9/other", b"[]")
    due = await outbox.claim_due()
    assert [(d.job_id, d.attempt, d.url, d.body) for d in due] == [
        ("j1", 1, "http://127.0.0.1:9/hook", b"{}")]
    status = await outbox.status("j1")
    assert status is not None and status["delivery_id"] == due[0].delivery_id
    assert status["state"] == "pending" and status["attempts"] == 1
    assert await outbox.status("j2") is None
    # a job whose webhook a version before the outbox sent is not sent again
    old_job = f"j-{uuid.uuid4().hex}"
    await outbox.redis.set(f"{LEGACY_SENT_PREFIX}{old_job}", b"1", ex=60)
    try:
        assert not await outbox.schedule(old_job, "http://127.0.0.1:9/hook", b"{}")
    finally:
        await outbox.redis.delete(f"{LEGACY_SENT_PREFIX}{old_job}")


async def test_a_claim_that_gets_no_outcome_is_due_again_after_its_lease(
        outbox: RedisWebhookOutbox) -> None:
    """The API died between the claim and the POST: nothing is lost."""
    await outbox.schedule("j1", "http://127.0.0.1:9/hook", b"{}")
    first = await outbox.claim_due()
    assert len(first) == 1
    assert await outbox.claim_due() == []  # leased: no other instance takes it meanwhile
    await asyncio.sleep(1.2)
    again = await outbox.claim_due()
    assert [(d.attempt, d.delivery_id) for d in again] == [(2, first[0].delivery_id)]
    # the first claim's late answer changes nothing: the second claim owns the delivery
    assert not await outbox.record(first[0], "failed", "HTTP 400", status=400)
    assert await outbox.record(again[0], "delivered", "HTTP 204", status=204)
    status = await outbox.status("j1")
    assert status is not None and status["state"] == "delivered" and status["delivered_at"]
    assert [e["attempt"] for e in status["log"]] == [1, 2]
    await asyncio.sleep(1.2)
    assert await outbox.claim_due() == []  # delivered: never sent again


async def test_a_retry_is_due_after_its_delay(outbox: RedisWebhookOutbox) -> None:
    await outbox.schedule("j1", "http://127.0.0.1:9/hook", b"{}")
    (due,) = await outbox.claim_due()
    assert await outbox.record(due, "retrying", "HTTP 503", status=503, retry_in=0.3)
    status = await outbox.status("j1")
    assert status is not None and status["state"] == "retrying"
    assert status["next_attempt_at"] and status["log"][0]["status"] == 503
    assert await outbox.claim_due() == []
    await asyncio.sleep(0.4)
    (again,) = await outbox.claim_due()
    assert again.attempt == 2


@dataclass
class FlakyReceiver:
    """Answers 503 until ``fail_for`` seconds after the first call, then 204."""

    fail_for: float
    calls: list[tuple[float, dict[str, str], bytes, int]] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        first = self.calls[0][0] if self.calls else now
        status = 503 if now - first < self.fail_for else 204
        self.calls.append((now, dict(request.headers), await request.read(), status))
        if status == 204:
            self.got.set()
        return web.Response(status=status)


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def _api(settings: Settings) -> web.Application:
    return create_app(with_env(settings, {
        "MAILSIFT_API_TOKENS": TOKEN, "MAILSIFT_WEBHOOK_SECRET": SECRET,
        "MAILSIFT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        # a receiver down for 2 minutes is reached at t = 135 s (5 + 10 + 20 + 40 + 60)
        "MAILSIFT_WEBHOOK_RETRY_DELAYS": "5,10,20,40,60,60"}))


async def _call(http: aiohttp.ClientSession, server: TestServer, method: str, path: str,
                **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, str(server.make_url(path)),
                            headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_a_job_completed_while_no_api_ran_gets_its_webhook_from_a_later_api(
        stack: Settings, tmp_path: Path) -> None:
    receiver = FlakyReceiver(fail_for=120.0)
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    hook = await _serve(hook_app)
    http = aiohttp.ClientSession()
    with running_world() as world:
        env = pipeline_env(world)
        settings = settings_for(env)
        worker: WorkerProcess | None = None
        try:
            # the API takes the job while no worker runs, and stops
            first = _api(settings)
            server = await _serve(first)
            await asyncio.wait_for(first[DISPATCHER].ready.wait(), 30)
            emails = ["alice@ok.test", "nobody@ok.test"]
            status, body = await _call(http, server, "POST", "/v1/jobs", json={
                "emails": emails, "webhook": str(hook.make_url("/hook"))})
            assert status == 202, body
            job_id = body["job_id"]
            await server.close()

            # the job completes with no API running
            worker = WorkerProcess(env, tmp_path / "worker.log")
            outcome = await wait_for_job(settings, job_id, {dedupe_key(e) for e in emails},
                                         timeout=120)
            assert outcome.completed() is not None
            await asyncio.sleep(2)
            assert receiver.calls == []

            # an API started later delivers it, through 2 minutes of 503s
            second = _api(settings)
            server = await _serve(second)
            try:
                await asyncio.wait_for(receiver.got.wait(), 240)
                await asyncio.sleep(1.5)  # no further attempt after the success
                delivered = [c for c in receiver.calls if c[3] == 204]
                assert len(delivered) == 1
                assert len(receiver.calls) >= 5
                ids = {c[1]["X-Mailsift-Delivery"] for c in receiver.calls}
                assert len(ids) == 1
                assert [int(c[1]["X-Mailsift-Attempt"]) for c in receiver.calls] == list(
                    range(1, len(receiver.calls) + 1))
                assert len({c[2] for c in receiver.calls}) == 1  # the same body every time
                status, job = await _call(http, server, "GET", f"/v1/jobs/{job_id}")
                assert status == 200, job
                webhook = job["webhook"]
                assert webhook["state"] == "delivered" and webhook["delivery_id"] in ids
                assert webhook["attempts"] == len(receiver.calls)
                assert [e["status"] for e in webhook["log"]] == [c[3] for c in receiver.calls]
            finally:
                await server.close()
        finally:
            if worker is not None:
                worker.stop()
            await http.close()
            await hook.close()
