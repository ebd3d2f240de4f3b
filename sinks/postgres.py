"""The Postgres sink (asyncpg): jobs and verdicts, upserted in batches.

* :meth:`PostgresSink.migrate` applies :data:`sinks.migrations.MIGRATIONS` (under an
  advisory lock, so several workers can start at once).
* :meth:`PostgresSink.write_verdicts` upserts a batch keyed by ``(job_id, address_key)``:
  a redelivered verdict never makes a second row, and a verdict only replaces one that was
  checked no later than itself (a newer attempt or replay wins, an old redelivery does not).
* :meth:`PostgresSink.erase_job` removes a job's rows and leaves a tombstone
  (``deleted_jobs``): every write checks it, so no late, redelivered or rebuilt event of an
  erased job writes a row again. Writers hold a shared advisory lock and the eraser the
  exclusive one, so a write in flight when the job is erased is either done before the
  erasure (and removed by it) or sees the tombstone.
* :meth:`PostgresSink.purge_expired` removes the jobs with no activity since a cutoff
  (``MAILSIFT_RETENTION_DAYS``).
* Connection failures propagate as the transient errors :mod:`streams.stage` retries: the
  sink never acks a verdict Postgres does not have.

>>> rows = dedupe_newest([("j", "a", "2026-01-01T00:00:02Z"), ("j", "a", "2026-01-01T00:00:01Z")],
...                      key=lambda r: r[:2], newest=lambda r: r[2])
>>> rows
[('j', 'a', '2026-01-01T00:00:02Z')]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import orjson

from schemas import JobEvent, VerdictEvent
from sinks.migrations import MIGRATIONS

__all__ = ["PostgresSink", "ErasedRows", "dedupe_newest"]

T = TypeVar("T")
_LOCK_ID = 0x6D61696C73696674  # "mailsift"
#: writers take it shared, an erasure exclusive (see the module's docstring)
_ERASE_LOCK_ID = 0x6D61696C65726173  # "mailerase"
_NOT_ERASED = "NOT EXISTS (SELECT 1 FROM deleted_jobs d WHERE d.job_id = $1)"

_UPSERT = f"""
INSERT INTO verdicts (job_id, address_key, email, normalized, verdict, reason, temporary,
                      attempt, checked_at, replay_id, request_id, metadata, evidence, source,
                      worker, score)
SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::boolean,
       $8::integer, $9::timestamptz, $10::text, $11::text, $12::jsonb, $13::jsonb, $14::text,
       $15::text, $16::smallint
WHERE {_NOT_ERASED}
ON CONFLICT (job_id, address_key) DO UPDATE SET
    email = EXCLUDED.email, normalized = EXCLUDED.normalized, verdict = EXCLUDED.verdict,
    reason = EXCLUDED.reason, temporary = EXCLUDED.temporary, attempt = EXCLUDED.attempt,
    checked_at = EXCLUDED.checked_at, replay_id = EXCLUDED.replay_id,
    request_id = EXCLUDED.request_id, metadata = EXCLUDED.metadata,
    evidence = EXCLUDED.evidence, source = EXCLUDED.source, worker = EXCLUDED.worker,
    score = EXCLUDED.score
WHERE verdicts.checked_at <= EXCLUDED.checked_at
"""

#: the columns of a stored verdict a reader gets (the API's StoredVerdict)
_ROWS = """SELECT address_key, email, normalized, verdict, reason, temporary, evidence, checked_at,
                 score
FROM verdicts WHERE job_id = $1"""

_JOB_CREATED = f"""
INSERT INTO jobs (job_id, run, total, created_at, owner)
SELECT $1::text, $2::text, $3::integer, $4::timestamptz, $5::text WHERE {_NOT_ERASED}
ON CONFLICT (job_id, run) DO UPDATE SET total = EXCLUDED.total,
    created_at = COALESCE(jobs.created_at, EXCLUDED.created_at),
    owner = COALESCE(jobs.owner, EXCLUDED.owner)
"""
_JOB_COMPLETED = f"""
INSERT INTO jobs (job_id, run, total, completed_at, counts)
SELECT $1::text, $2::text, $3::integer, $4::timestamptz, $5::jsonb WHERE {_NOT_ERASED}
ON CONFLICT (job_id, run) DO UPDATE SET completed_at = EXCLUDED.completed_at,
    counts = EXCLUDED.counts, total = COALESCE(jobs.total, EXCLUDED.total)
"""
# a job expires when nothing of it (a run created or completed, a verdict checked) is as
# new as the cutoff: the candidates come from the time indexes, then each is checked; $2
# jobs at most per statement (a big backlog goes in several, none near the timeout)
_PURGE = """
WITH candidates AS (
    SELECT job_id FROM jobs WHERE created_at < $1 OR completed_at < $1
    UNION SELECT DISTINCT job_id FROM verdicts WHERE checked_at < $1
), expired AS (
    SELECT c.job_id FROM candidates c
    WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = c.job_id
                      AND (j.created_at >= $1 OR j.completed_at >= $1))
      AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.job_id = c.job_id
                      AND v.checked_at >= $1)
    LIMIT $2
), gone_verdicts AS (
    DELETE FROM verdicts v USING expired e WHERE v.job_id = e.job_id RETURNING 1
), gone_runs AS (
    DELETE FROM jobs j USING expired e WHERE j.job_id = e.job_id RETURNING 1
)
SELECT (SELECT count(*) FROM expired) AS jobs, (SELECT count(*) FROM gone_runs) AS runs,
       (SELECT count(*) FROM gone_verdicts) AS verdicts
"""
#: one purge at a time over all workers (a second one would only wait for the first)
_PURGE_LOCK_ID = 0x6D61696C70757267  # "mailpurg"


@dataclass(frozen=True)
class ErasedRows:
    """What an erasure or a purge removed: jobs, their runs (original and replays), and
    verdict rows."""

    jobs: int
    runs: int
    verdicts: int


def dedupe_newest(rows: Iterable[T], *, key: Callable[[T], Hashable],
                  newest: Callable[[T], Any]) -> list[T]:
    """One row per key, the newest (a single statement may not update a row twice)."""
    best: dict[Hashable, T] = {}
    for row in rows:
        k = key(row)
        if k not in best or newest(row) >= newest(best[k]):
            best[k] = row
    return list(best.values())


def _json(value: Any) -> str:
    """``value`` as JSON text for a ``jsonb`` parameter (orjson: the sink writes one per
    verdict)."""
    return orjson.dumps(value).decode()


def _ts(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class PostgresSink:
    """Writes verdicts and job events; the pool is made on first use (Postgres may be down)."""

    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._migrated = False

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await self._create_pool()
        if not self._migrated:
            await self.migrate()
        return self._pool

    async def _create_pool(self) -> asyncpg.Pool:
        # min_size=0: no background reconnection loop (and its tracebacks) while
        # Postgres is down; connections are made when a write needs one
        return await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.max_connections,
                                         command_timeout=60)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied now."""
        if self._pool is None:
            self._pool = await self._create_pool()
        applied: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY, description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {r["version"] for r in await conn.fetch(
                "SELECT version FROM schema_migrations")}
            for version, description, sql in MIGRATIONS:
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, description) "
                                   "VALUES ($1, $2)", version, description)
                applied.append(version)
        self._migrated = True
        return applied

    async def write_verdicts(self, verdicts: Sequence[VerdictEvent]) -> None:
        """Upsert a batch in one transaction."""
        rows = dedupe_newest(
            (self._row(v) for v in verdicts), key=lambda r: (r[0], r[1]), newest=lambda r: r[8])
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _ERASE_LOCK_ID)
            await conn.executemany(_UPSERT, rows)

    async def write_job_event(self, event: JobEvent) -> None:
        """A ``created`` or ``completed`` event updates the job's run, ``deleted`` erases
        the job (as :meth:`erase_job`); the others are not kept here."""
        if event.kind == "deleted":
            await self.erase_job(event.job_id)
            return
        if event.kind not in {"created", "completed"}:
            return
        pool = await self.pool()
        run = event.replay_id or ""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _ERASE_LOCK_ID)
            if event.kind == "created":
                await conn.execute(_JOB_CREATED, event.job_id, run, event.total,
                                   _ts(event.at), event.owner)
            else:
                await conn.execute(_JOB_COMPLETED, event.job_id, run, event.total,
                                   _ts(event.at), _json(event.counts or {}))

    async def erase_job(self, job_id: str) -> ErasedRows:
        """Remove every row of ``job_id`` (all its runs) and leave its tombstone; again for
        an erased job, it removes nothing and keeps the first tombstone's time."""
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ERASE_LOCK_ID)
            await conn.execute("INSERT INTO deleted_jobs (job_id) VALUES ($1) "
                               "ON CONFLICT (job_id) DO NOTHING", job_id)
            verdicts = await conn.fetchval(
                "WITH gone AS (DELETE FROM verdicts WHERE job_id = $1 RETURNING 1) "
                "SELECT count(*) FROM gone", job_id)
            runs = await conn.fetchval(
                "WITH gone AS (DELETE FROM jobs WHERE job_id = $1 RETURNING 1) "
                "SELECT count(*) FROM gone", job_id)
        return ErasedRows(jobs=1 if runs or verdicts else 0, runs=int(runs),
                          verdicts=int(verdicts))

    async def is_erased(self, job_id: str) -> bool:
        """Whether ``job_id`` was erased (it has a tombstone)."""
        return bool(await (await self.pool()).fetchval(
            "SELECT 1 FROM deleted_jobs WHERE job_id = $1", job_id))

    async def purge_expired(self, cutoff: datetime, *, jobs_per_statement: int = 200
                            ) -> ErasedRows:
        """Remove every job with no activity since ``cutoff`` (no run created or completed
        and no verdict checked at or after it): all its runs and verdicts, a job at a time
        never halved. One purge runs at a time over all workers: while another holds the
        lock, this one removes nothing (it is the other's work)."""
        pool = await self.pool()
        jobs = runs = verdicts = 0
        async with pool.acquire() as conn:
            locked = await conn.fetchval("SELECT pg_try_advisory_lock($1)", _PURGE_LOCK_ID)
            if not locked:
                return ErasedRows(0, 0, 0)
            try:
                while True:
                    # a statement per chunk, with time enough for a big job's rows
                    row = await conn.fetchrow(_PURGE, cutoff, jobs_per_statement,
                                              timeout=600)
                    jobs, runs = jobs + int(row["jobs"]), runs + int(row["runs"])
                    verdicts += int(row["verdicts"])
                    if int(row["jobs"]) < jobs_per_statement:
                        break
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _PURGE_LOCK_ID)
        return ErasedRows(jobs=jobs, runs=runs, verdicts=verdicts)

    async def list_jobs(self, *, owner: str | None, limit: int) -> list[Any]:
        """The original runs of ``owner``'s jobs (None: every job), newest first."""
        pool = await self.pool()
        sql = ("SELECT job_id, total, created_at, completed_at, counts FROM jobs "
               "WHERE run = ''" + (" AND owner = $2" if owner is not None else "")
               + " ORDER BY created_at DESC NULLS LAST, job_id LIMIT $1")
        args: list[Any] = [limit] + ([owner] if owner is not None else [])
        return list(await pool.fetch(sql, *args))

    async def job_owner(self, job_id: str) -> str | None:
        """The owner (API token fingerprint) of the job's original run, if it has one."""
        owner = await (await self.pool()).fetchval(
            "SELECT owner FROM jobs WHERE job_id = $1 AND run = ''", job_id)
        return None if owner is None else str(owner)

    async def job_summary(self, job_id: str) -> dict[str, Any]:
        """Progress of a job as stored: total, completion and counts by verdict."""
        pool = await self.pool()
        job = await pool.fetchrow("SELECT total, created_at, completed_at FROM jobs "
                                  "WHERE job_id = $1 AND run = ''", job_id)
        counts = {r["verdict"]: r["n"] for r in await pool.fetch(
            "SELECT verdict, count(*) AS n FROM verdicts WHERE job_id = $1 GROUP BY verdict",
            job_id)}
        return {"job_id": job_id, "total": job["total"] if job else None,
                "completed_at": job["completed_at"] if job else None,
                "stored": sum(counts.values()), "by_verdict": counts}

    # --- reads (the API's queries: every SQL of these tables lives in this module) --------

    async def ping(self) -> None:
        """One round trip (readiness)."""
        await (await self.pool()).fetchval("SELECT 1")

    async def is_empty(self) -> bool:
        """No verdict stored at all (a rebuild fills only an empty database)."""
        return not await (await self.pool()).fetchval("SELECT count(*) FROM verdicts")

    async def verdict_count(self, job_id: str) -> int:
        """Verdicts stored for ``job_id`` (one per address)."""
        pool = await self.pool()
        return int(await pool.fetchval("SELECT count(*) FROM verdicts WHERE job_id = $1",
                                       job_id))

    async def job_total(self, job_id: str) -> int | None:
        """The total of the job's original run, None when the job is not known here."""
        pool = await self.pool()
        total = await pool.fetchval("SELECT total FROM jobs WHERE job_id = $1 AND run = ''",
                                    job_id)
        return None if total is None else int(total)

    async def verdict_rows(self, job_id: str, *, limit: int, offset: int = 0,
                           after: str | None = None) -> list[Any]:
        """Stored verdicts of ``job_id`` in ``address_key`` order: the page at ``offset``,
        or (keyset paging, cheap however deep) the ``limit`` after ``after``."""
        pool = await self.pool()
        if after is None:
            return list(await pool.fetch(_ROWS + " ORDER BY address_key OFFSET $2 LIMIT $3",
                                         job_id, offset, limit))
        return list(await pool.fetch(
            _ROWS + " AND address_key > $2 ORDER BY address_key LIMIT $3", job_id, after, limit))

    async def first_verdict(self, job_id: str) -> Any:
        """Any one stored verdict of ``job_id`` (a one-address job's), or None."""
        return await (await self.pool()).fetchrow(_ROWS + " LIMIT 1", job_id)

    async def verdict_totals(self) -> dict[str, int]:
        """Stored verdicts by verdict, over every job (the API's metrics)."""
        pool = await self.pool()
        rows = await pool.fetch("SELECT verdict, count(*) AS n FROM verdicts GROUP BY verdict",
                                timeout=10)
        return {r["verdict"]: int(r["n"]) for r in rows}

    @staticmethod
    def _row(v: VerdictEvent) -> tuple[Any, ...]:
        return (v.job_id, v.dedupe_key, v.email, v.normalized, v.verdict, v.reason,
                v.temporary, v.attempt, _ts(v.checked_at), v.replay_id, v.request_id,
                _json(v.metadata) if v.metadata is not None else None,
                _json(v.evidence), v.source, v.worker, v.score)
