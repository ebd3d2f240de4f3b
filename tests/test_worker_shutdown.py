"""A worker that is stopped QUITs its pooled SMTP sessions and gives their slots back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailsift.settings import Settings
from sinks.redis_tables import redis_client
from streams.client import submit_job
from tests.pipeline_support import (
    WorkerProcess,
    dedupe_key,
    pipeline_env,
    running_world,
    settings_for,
    wait_for_job,
)

pytestmark = pytest.mark.stack


async def leases(settings: Settings) -> int:
    client = redis_client(settings.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}mx:*:conn")]
        return sum([int(await client.zcard(k)) for k in keys])
    finally:
        await client.aclose()


def test_stopped_worker_releases_its_pooled_sessions(stack: Settings, tmp_path: Path) -> None:
    with running_world("--no-default", "--bulk", "20", "--bulk-mailboxes", "3",
                       "--bulk-mx-hosts", "2") as world:
        # sessions would stay open (and their slots held) for a minute without work
        env = pipeline_env(world, MAILSIFT_SMTP_IDLE_SECONDS="60")
        settings = settings_for(env)
        worker = WorkerProcess(env, tmp_path / "worker.log")
        try:
            emails = [f"user0@bulk{i}.test" for i in range(20)]

            async def run() -> None:
                job = await submit_job(settings, emails)
                await wait_for_job(settings, job, {dedupe_key(e) for e in emails}, timeout=120)

            asyncio.run(run())
            assert asyncio.run(leases(settings)) > 0  # the pool holds its sessions
            open_before = sum(h["current_connections"] for h in world.stats()["mx"].values())
            assert open_before > 0
        finally:
            worker.stop()
        # the leases are gone at once, not after their 30 s expiry
        assert asyncio.run(leases(settings)) == 0
        assert sum(h["current_connections"] for h in world.stats()["mx"].values()) == 0
