"""#12: erasing a job (``mailsift jobs delete``) and the retention purge, on the real stack.

A deleted job leaves Postgres and Redis at once, its in-flight addresses are not probed
any more, and neither ``replay``, ``sink rebuild`` nor the job-state rebuild brings any of
it back. The purge removes exactly the jobs with no activity within the retention.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailsift.settings import Settings
from schemas import JobEvent, VerdictEvent
from sinks.postgres import PostgresSink
from sinks.redis_client import redis_client
from sinks.redis_jobs import RedisJobStore
from streams.client import JobErased, job_verdicts, submit_job
from streams.job_rebuild import rebuild_job_state
from streams.rebuild import rebuild_from_topics
from streams.replay import replay
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    dedupe_key,
    pipeline_env,
    run_cli,
    running_world,
    settings_for,
    wait_for_job,
)
from tests.test_sink_postgres import create_database

pytestmark = pytest.mark.stack

DAY = timedelta(days=1)



def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _verdict(job: str, key: str, at: datetime, replay_id: str | None = None) -> VerdictEvent:
    return VerdictEvent(job_id=job, email=key, normalized=key, verdict="deliverable",
                        reason="ok", dedupe_key=key, attempt=1, checked_at=_iso(at),
                        evidence={}, replay_id=replay_id)


async def _job(sink: PostgresSink, job: str, created: datetime, *, completed: datetime | None,
               verdicts: list[datetime], replay: tuple[str, datetime] | None = None) -> None:
    created_event = JobEvent(job_id=job, kind="created", total=len(verdicts), at=_iso(created))
    await sink.write_job_event(created_event)
    if completed is not None:
        await sink.write_job_event(JobEvent(job_id=job, kind="completed", total=len(verdicts),
                                            counts={"deliverable": len(verdicts)},
                                            at=_iso(completed)))
    await sink.write_verdicts([_verdict(job, f"a{i}@x.test", at)
                               for i, at in enumerate(verdicts)])
    # as if uploaded through the API: its rows, with their columns (addresses: they go too)
    await sink.write_inputs(job, [(i + 2, f"a{i}@x.test", (f"a{i}@x.test", "n"))
                                  for i in range(len(verdicts))])
    if replay is not None:
        replay_id, at = replay
        await sink.write_job_event(JobEvent(job_id=job, kind="created", total=1,
                                            replay_id=replay_id, at=_iso(at)))


async def _rows(sink: PostgresSink) -> dict[str, tuple[int, int, int]]:
    """Runs, verdicts and upload rows per job."""
    pool = await sink.pool()
    counts = [{r["job_id"]: r["n"] for r in await pool.fetch(
        f"SELECT job_id, count(*) AS n FROM {table} GROUP BY job_id")}
        for table in ("jobs", "verdicts", "job_inputs")]
    jobs = set().union(*counts)
    return {job: (counts[0].get(job, 0), counts[1].get(job, 0), counts[2].get(job, 0))
            for job in jobs}


@pytest.mark.asyncio
async def test_the_purge_removes_exactly_the_jobs_with_nothing_newer_than_the_cutoff(
        stack: Settings) -> None:
    """`mailsift db purge` as a user runs it (MAILSIFT_RETENTION_DAYS=30): a job goes
    whole, and only when nothing of it is newer than the retention."""
    dsn = await create_database(stack.database_url)
    sink = PostgresSink(dsn)
    now = datetime.now(UTC)
    cutoff = now - 30 * DAY
    try:
        await _job(sink, "old", now - 40 * DAY, completed=now - 40 * DAY,
                   verdicts=[now - 40 * DAY] * 3)
        await _job(sink, "old-without-verdicts", now - 50 * DAY, completed=None, verdicts=[])
        await _job(sink, "fresh", now - DAY, completed=now - DAY, verdicts=[now - DAY] * 2)
        # created long ago, but a verdict checked (a late retry) within the retention
        await _job(sink, "late-verdict", now - 40 * DAY, completed=None,
                   verdicts=[now - 40 * DAY, now - 29 * DAY])
        # created and checked long ago, completed within the retention
        await _job(sink, "late-completion", now - 40 * DAY, completed=now - 29 * DAY,
                   verdicts=[now - 40 * DAY])
        # an old job replayed yesterday: its replay run keeps the whole job
        await _job(sink, "replayed", now - 40 * DAY, completed=now - 40 * DAY,
                   verdicts=[now - 40 * DAY], replay=("r1", now - DAY))
        # just past the cutoff
        await _job(sink, "edge", cutoff - timedelta(seconds=5), completed=None,
                   verdicts=[cutoff - timedelta(seconds=5)])
        before = await _rows(sink)
        purged = await asyncio.to_thread(run_cli, {"MAILSIFT_DATABASE_URL": dsn,
                                                "MAILSIFT_RETENTION_DAYS": "30"}, "db", "purge")
        assert purged.returncode == 0, purged.stderr
        assert "purged 3 jobs (3 runs, 4 verdicts)" in purged.stdout, purged.stdout
        after = await _rows(sink)
        assert set(before) - set(after) == {"old", "old-without-verdicts", "edge"}
        for job in ("fresh", "late-verdict", "late-completion", "replayed"):
            assert after[job] == before[job], job
        again = await sink.purge_expired(cutoff)
        assert (again.jobs, again.verdicts) == (0, 0)
    finally:
        await sink.close()


@pytest.fixture
def world() -> Any:
    # greylist.test answers 451 to every RCPT for 10 minutes: its addresses keep retrying
    with running_world("--greylist-seconds", "600", "--bulk", "2",
                       "--bulk-mailboxes", "20") as w:
        yield w


def _rcpts(world: WorldProcess) -> int:
    return int(world.stats()["mx"]["mx.greylist.test"]["rcpt"])


async def _redis_keys(settings: Settings, job: str) -> list[bytes]:
    client = redis_client(settings.redis_url)
    try:
        return [k async for k in client.scan_iter(match=f"{settings.redis_prefix}job:{job}*")]
    finally:
        await client.aclose()


def test_a_deleted_job_is_gone_everywhere_and_stays_gone(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """Two finished jobs; one is deleted with `mailsift jobs delete` as a user runs it: its
    rows and keys are gone, the other job's are all there. Then `results`, `replay`, `sink
    rebuild` and the job-state rebuild find nothing of it. A third job, deleted while it
    runs (greylisted, so retried every 2 s), sees no more RCPT probes a moment later, and
    none of its rows or keys come back.
    Meanwhile the worker's periodic purge removed a job older than the retention."""
    dsn = asyncio.run(create_database(stack.database_url))
    env = pipeline_env(world, MAILSIFT_DATABASE_URL=dsn, MAILSIFT_AMQP_URL="",
                       MAILSIFT_PURGE_INTERVAL="1", MAILSIFT_RETRY_DELAYS="2,2,2,2,2,2,2,2")
    settings = settings_for(env)
    gone = [f"user{i}@bulk0.test" for i in range(6)] + ["nobody@bulk0.test"]
    kept = [f"user{i}@bulk1.test" for i in range(6, 12)]
    running = ["alice@greylist.test", "bob@greylist.test", "carol@greylist.test"]

    async def seed_an_expired_job() -> None:
        sink = PostgresSink(dsn)
        try:
            long_ago = datetime.now(UTC) - 45 * DAY
            await _job(sink, "expired-job", long_ago, completed=long_ago,
                       verdicts=[long_ago] * 2)
        finally:
            await sink.close()

    asyncio.run(seed_an_expired_job())
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        async def finish_two() -> tuple[str, str]:
            a = await submit_job(settings, gone)
            b = await submit_job(settings, kept)
            await wait_for_job(settings, a, {dedupe_key(e) for e in gone}, timeout=120)
            await wait_for_job(settings, b, {dedupe_key(e) for e in kept}, timeout=120)
            return a, b

        job_a, job_b = asyncio.run(finish_two())

        async def stored(job: str, n: int) -> PostgresSink:
            sink = PostgresSink(dsn)
            for _ in range(120):
                if await sink.verdict_count(job) == n and await sink.job_total(job):
                    return sink
                await asyncio.sleep(0.5)
            raise AssertionError(f"{job}: {await sink.verdict_count(job)} rows")

        async def check_both_stored() -> None:
            for job, emails in ((job_a, gone), (job_b, kept)):
                await (await stored(job, len(emails))).close()
            assert await _redis_keys(settings, job_a)

        asyncio.run(check_both_stored())
        deleted = run_cli(env, "jobs", "delete", job_a)
        assert deleted.returncode == 0, deleted.stderr
        assert f"erased job {job_a}: {len(gone)} verdict rows" in deleted.stdout

        async def after_delete() -> None:
            sink = PostgresSink(dsn)
            try:
                assert await sink.verdict_count(job_a) == 0
                assert await sink.job_total(job_a) is None
                assert await sink.is_erased(job_a)
                assert await sink.verdict_count(job_b) == len(kept)
                assert await sink.job_total(job_b) == len(kept)
                # the periodic purge (every second here) took the job of 45 days ago
                assert await sink.job_total("expired-job") is None
                assert await sink.verdict_count("expired-job") == 0
            finally:
                await sink.close()
            assert await _redis_keys(settings, job_a) == []
            assert await _redis_keys(settings, job_b)
            with pytest.raises(JobErased):
                await job_verdicts(settings, job_a)
            assert len(await job_verdicts(settings, job_b)) == len(kept)

        asyncio.run(after_delete())
        results = run_cli(env, "results", job_a)
        assert results.returncode == 2 and "was erased" in results.stderr
        again = run_cli(env, "replay", "--job", job_a)
        assert again.returncode == 2 and "was erased" in again.stderr

        # a job deleted while it runs: no more probes of it, nothing of it comes back
        async def delete_while_running() -> tuple[str, int, int]:
            job_c = await submit_job(settings, running)
            start = _rcpts(world)
            for _ in range(240):  # its second attempt is under way
                if _rcpts(world) >= start + 2 * len(running):
                    break
                await asyncio.sleep(0.25)
            erased = run_cli(env, "jobs", "delete", job_c)
            assert erased.returncode == 0, erased.stderr
            await asyncio.sleep(2)  # an attempt already in a session finishes
            settled = _rcpts(world)
            await asyncio.sleep(7)  # three more retries, had the job not been deleted
            return job_c, settled, _rcpts(world)

        job_c, settled, later = asyncio.run(delete_while_running())
        assert later == settled, "the deleted job was still probed"

        async def nothing_of_c() -> None:
            assert await _redis_keys(settings, job_c) == []
            sink = PostgresSink(dsn)
            try:
                assert await sink.verdict_count(job_c) == 0
                assert await sink.job_total(job_c) is None
            finally:
                await sink.close()

        asyncio.run(nothing_of_c())
    finally:
        worker.stop()

    async def nothing_comes_back() -> None:
        # replay of everything: only job B's submissions are copied
        summary = await replay(settings)
        assert dict(summary.jobs) == {job_b: len(kept)}
        assert summary.skipped_erased == len(gone) + len(running)
        # `sink rebuild` into an empty database: job B, and nothing of A or C
        fresh = await create_database(stack.database_url)
        verdicts, _ = await rebuild_from_topics(settings_for({**env,
                                                              "MAILSIFT_DATABASE_URL": fresh}))
        assert verdicts > 0
        sink = PostgresSink(fresh)
        try:
            assert await sink.verdict_count(job_b) == len(kept)
            for job in (job_a, job_c):
                assert await sink.verdict_count(job) == 0 and await sink.job_total(job) is None
                assert await sink.is_erased(job)
        finally:
            await sink.close()
        # the job-state rebuild (Redis lost everything) into keys of its own
        client = redis_client(settings.redis_url)
        prefix = f"rebuilt-{uuid.uuid4().hex[:8]}:"
        try:
            store = RedisJobStore(client, prefix=prefix)
            await rebuild_job_state(settings, store)
            await client.set(store.intact_key, "1")  # what the store's recovery does after
            assert await store.erased([job_a, job_b, job_c]) == {job_a, job_c}
            progress = await store.progress(job_b)
            assert progress.total == len(kept) and progress.done == len(kept)
            left = [k async for k in client.scan_iter(match=f"{prefix}job:*")]
            assert left and not [k for k in left if job_a.encode() in k or job_c.encode() in k]
            for k in left:
                await client.unlink(k)
            await client.unlink(store.erased_key, store.intact_key)
        finally:
            await client.aclose()

    asyncio.run(nothing_comes_back())
