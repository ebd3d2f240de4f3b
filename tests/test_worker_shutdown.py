"""A worker that is stopped QUITs its pooled SMTP sessions and gives their slots back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailsift.settings import Settings
from sinks.redis_client import redis_client
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


def test_sigterm_mid_job_drains_within_the_deadline_and_the_next_worker_finishes(
        stack: Settings, tmp_path: Path) -> None:
    """SIGTERM while hundreds of addresses are in flight at polite rates: the worker stops
    taking events, QUITs its sessions and exits within MAILSIFT_DRAIN_SECONDS (plus Faust's
    own stop); every session is closed; a worker started next completes the job."""
    import os
    import signal
    import time

    with running_world("--no-default", "--bulk", "20", "--bulk-mailboxes", "8",
                       "--bulk-mx-hosts", "4") as world:
        env = pipeline_env(world, MAILSIFT_DRAIN_SECONDS="4",
                           MAILSIFT_MX_MAX_RCPT_PER_SECOND="5")
        settings = settings_for(env)
        emails = [f"user{j}@bulk{i}.test" for i in range(20) for j in range(10)]
        first = WorkerProcess(env, tmp_path / "first.log")
        seen: list[int] = []

        async def until_midway(count: int) -> None:
            seen.append(count)
            if count == 30:
                raise _Midway

        async def start() -> str:
            job = await submit_job(settings, emails)
            try:
                await wait_for_job(settings, job, {dedupe_key(e) for e in emails},
                                   timeout=120, on_verdict=until_midway)
            except _Midway:
                pass
            return job

        try:
            job = asyncio.run(start())
            assert seen and seen[-1] == 30, "the job finished before the SIGTERM"
            os.kill(first.pid, signal.SIGTERM)
            started = time.monotonic()
            first.proc.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            first.stop()
        assert took < 4 + 8, f"the worker took {took:.1f} s to stop"
        assert "draining:" in first.log_text()
        assert sum(h["current_connections"] for h in world.stats()["mx"].values()) == 0
        assert "Traceback" not in first.log_text()

        second = WorkerProcess(env, tmp_path / "second.log")
        try:
            outcome = asyncio.run(wait_for_job(settings, job, {dedupe_key(e) for e in emails},
                                               timeout=120))
            completed = outcome.completed()
            assert completed is not None and completed.counts == {
                "deliverable": 160, "undeliverable": 40}
        finally:
            second.stop()


class _Midway(Exception):
    """Stop following the job: enough verdicts were seen."""
