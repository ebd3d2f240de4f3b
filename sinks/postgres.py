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

#: the verdicts filter of a reader (``$2``: a list of verdicts, or NULL for all)
_OF_VERDICTS = "($2::text[] IS NULL OR verdict = ANY($2::text[]))"

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
#: a job submitted through the API, recorded before its rows are stored and produced
_UPLOAD = f"""
INSERT INTO jobs (job_id, run, created_at, owner, name, columns, email_cell)
SELECT $1::text, '', $2::timestamptz, $3::text, $4::text, $5::text[], $6::integer
WHERE {_NOT_ERASED}
ON CONFLICT (job_id, run) DO UPDATE SET name = EXCLUDED.name, columns = EXCLUDED.columns,
    email_cell = EXCLUDED.email_cell, owner = COALESCE(jobs.owner, EXCLUDED.owner),
    created_at = COALESCE(jobs.created_at, EXCLUDED.created_at)
"""
#: a batch of an upload's rows (a batch written again after an error adds nothing)
_INPUTS = f"""
INSERT INTO job_inputs (job_id, line, address_key, cells)
SELECT $1::text, t.line, t.address_key, t.cells
FROM unnest($2::integer[], $3::text[], $4::text[]) AS t(line, address_key, cells)
WHERE {_NOT_ERASED}
ON CONFLICT (job_id, line) DO NOTHING
"""
#: an upload's rows in input order with their verdicts (rows without one yet are left
#: out) and the line of the address's first row
_INPUT_ROWS = """
SELECT i.line, i.cells, v.address_key, v.email, v.normalized, v.verdict, v.reason,
       v.temporary, v.evidence, v.checked_at, v.score,
       (SELECT min(d.line) FROM job_inputs d
        WHERE d.job_id = i.job_id AND d.address_key = i.address_key) AS first_line
FROM job_inputs i JOIN verdicts v ON v.job_id = i.job_id AND v.address_key = i.address_key
WHERE i.job_id = $1 AND ($2::text[] IS NULL OR v.verdict = ANY($2::text[]))"""

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
), gone_inputs AS (
    DELETE FROM job_inputs i USING expired e WHERE i.job_id = e.job_id RETURNING 1
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
            await conn.execute("DELETE FROM job_inputs WHERE job_id = $1", job_id)
        return ErasedRows(jobs=1 if runs or verdicts else 0, runs=int(runs),
                          verdicts=int(verdicts))

    async def record_upload(self, job_id: str, *, created_at: datetime, owner: str | None,
                            name: str | None, columns: Sequence[str] | None,
                            email_cell: int) -> bool:
        """Record a job submitted through the API before its rows are stored: its owner,
        name and (a CSV upload's) columns, and where each row's address is. False when
        the job was erased."""
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _ERASE_LOCK_ID)
            status = await conn.execute(_UPLOAD, job_id, created_at, owner, name,
                                        None if columns is None else list(columns),
                                        email_cell)
        return bool(status.endswith(" 1"))

    async def write_inputs(self, job_id: str, rows: Sequence[tuple[int, str, Sequence[str]]]
                           ) -> None:
        """Store a batch of an upload's rows: ``(line, address_key, cells)`` each (nothing
        for an erased job)."""
        lines = [r[0] for r in rows]
        keys = [r[1] for r in rows]
        cells = [orjson.dumps(list(r[2])).decode() for r in rows]
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _ERASE_LOCK_ID)
            await conn.execute(_INPUTS, job_id, lines, keys, cells)

    async def job_upload(self, job_id: str) -> Any:
        """The job's upload record (name, columns, email_cell), or None for a job that
        did not come through the API."""
        return await (await self.pool()).fetchrow(
            "SELECT name, columns, email_cell FROM jobs WHERE job_id = $1 AND run = '' "
            "AND email_cell IS NOT NULL", job_id)

    async def input_count(self, job_id: str, verdicts: Sequence[str] | None = None) -> int:
        """Rows of the job's upload that have a verdict (of ``verdicts``, when given)."""
        return int(await (await self.pool()).fetchval(
            "SELECT count(*) FROM (" + _INPUT_ROWS + ") r", job_id,
            None if verdicts is None else list(verdicts)))

    async def input_rows(self, job_id: str, *, limit: int, offset: int = 0,
                         after: int | None = None, verdicts: Sequence[str] | None = None
                         ) -> list[Any]:
        """The job's upload rows with a verdict (of ``verdicts``), in input order: the page
        at ``offset``, or the ``limit`` after line ``after`` (keyset paging)."""
        pool = await self.pool()
        wanted = None if verdicts is None else list(verdicts)
        if after is None:
            return list(await pool.fetch(_INPUT_ROWS + " ORDER BY i.line OFFSET $3 LIMIT $4",
                                         job_id, wanted, offset, limit))
        return list(await pool.fetch(_INPUT_ROWS + " AND i.line > $3 ORDER BY i.line LIMIT $4",
                                     job_id, wanted, after, limit))

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
        sql = ("SELECT job_id, total, created_at, completed_at, counts, name FROM jobs "
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
        """Progress of a job as stored: total, completion, name, and counts by verdict and
        by reason (``by_reason``: most frequent first)."""
        pool = await self.pool()
        job = await pool.fetchrow("SELECT total, created_at, completed_at, name FROM jobs "
                                  "WHERE job_id = $1 AND run = ''", job_id)
        counts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for r in await pool.fetch("SELECT verdict, reason, count(*) AS n FROM verdicts "
                                  "WHERE job_id = $1 GROUP BY verdict, reason "
                                  "ORDER BY n DESC, reason", job_id):
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + int(r["n"])
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + int(r["n"])
        return {"job_id": job_id, "total": job["total"] if job else None,
                "completed_at": job["completed_at"] if job else None,
                "created_at": job["created_at"] if job else None,
                "name": job["name"] if job else None,
                "stored": sum(counts.values()), "by_verdict": counts,
                "by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))}

    # --- reads (the API's queries: every SQL of these tables lives in this module) --------

    async def ping(self) -> None:
        """One round trip (readiness)."""
        await (await self.pool()).fetchval("SELECT 1")

    async def is_empty(self) -> bool:
        """No verdict stored at all (a rebuild fills only an empty database)."""
        return not await (await self.pool()).fetchval("SELECT count(*) FROM verdicts")

    async def verdict_count(self, job_id: str, verdicts: Sequence[str] | None = None) -> int:
        """Verdicts stored for ``job_id`` (one per address; of ``verdicts``, when given)."""
        pool = await self.pool()
        return int(await pool.fetchval(
            "SELECT count(*) FROM verdicts WHERE job_id = $1 AND " + _OF_VERDICTS, job_id,
            None if verdicts is None else list(verdicts)))

    async def job_total(self, job_id: str) -> int | None:
        """The total of the job's original run, None when the job is not known here."""
        pool = await self.pool()
        total = await pool.fetchval("SELECT total FROM jobs WHERE job_id = $1 AND run = ''",
                                    job_id)
        return None if total is None else int(total)

    async def verdict_rows(self, job_id: str, *, limit: int, offset: int = 0,
                           after: str | None = None, verdicts: Sequence[str] | None = None
                           ) -> list[Any]:
        """Stored verdicts of ``job_id`` (of ``verdicts``, when given) in ``address_key``
        order: the page at ``offset``, or (keyset paging, cheap however deep) the ``limit``
        after ``after``."""
        pool = await self.pool()
        wanted = None if verdicts is None else list(verdicts)
        if after is None:
            return list(await pool.fetch(
                _ROWS + " AND " + _OF_VERDICTS + " ORDER BY address_key OFFSET $3 LIMIT $4",
                job_id, wanted, offset, limit))
        return list(await pool.fetch(
            _ROWS + " AND " + _OF_VERDICTS + " AND address_key > $3 ORDER BY address_key "
            "LIMIT $4", job_id, wanted, after, limit))

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
