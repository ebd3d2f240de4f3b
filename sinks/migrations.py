"""Versioned schema migrations of the Postgres sink, applied in order, each exactly once.

Add a migration by appending to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

#: (version, description, SQL)
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "jobs and verdicts", """
        CREATE TABLE jobs (
            job_id       text NOT NULL,
            run          text NOT NULL DEFAULT '',   -- '' = original run, else the replay id
            total        integer,
            created_at   timestamptz,
            completed_at timestamptz,
            counts       jsonb,
            PRIMARY KEY (job_id, run)
        );
        CREATE TABLE verdicts (
            job_id      text NOT NULL,
            address_key text NOT NULL,               -- the address's identity in the job
            email       text NOT NULL,               -- as submitted
            normalized  text,
            verdict     text NOT NULL,
            reason      text NOT NULL,
            temporary   boolean NOT NULL DEFAULT false,
            attempt     integer NOT NULL,
            checked_at  timestamptz NOT NULL,
            replay_id   text,
            request_id  text,
            metadata    jsonb,
            evidence    jsonb NOT NULL,
            source      text,
            worker      text,
            PRIMARY KEY (job_id, address_key)
        );
        CREATE INDEX verdicts_by_job_verdict ON verdicts (job_id, verdict);
    """),
    (2, "verdict score", """
        ALTER TABLE verdicts ADD COLUMN IF NOT EXISTS score smallint;  -- 0-100, checks.score
    """),
    (3, "erased jobs, job owners, verdicts by age", """
        -- a job erased on request: its rows are gone, and no late or replayed event of it
        -- may write one again (job id and time only: no address)
        CREATE TABLE IF NOT EXISTS deleted_jobs (
            job_id     text PRIMARY KEY,
            deleted_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE jobs ADD COLUMN IF NOT EXISTS owner text;  -- API token fingerprint
        CREATE INDEX IF NOT EXISTS verdicts_by_checked_at ON verdicts (checked_at);
        CREATE INDEX IF NOT EXISTS jobs_by_created_at ON jobs (created_at);
    """),
    (4, "job inputs: the rows of an upload, its columns and name", """
        -- the rows of a list submitted through the API, in input order, so results keep
        -- the input's columns and order (duplicates included); erased and purged with it
        CREATE TABLE IF NOT EXISTS job_inputs (
            job_id      text NOT NULL,
            line        integer NOT NULL,        -- the row's line in the upload
            address_key text NOT NULL,           -- as verdicts.address_key
            cells       text NOT NULL,           -- the row's values: a JSON array
            PRIMARY KEY (job_id, line)
        );
        CREATE INDEX IF NOT EXISTS job_inputs_by_key ON job_inputs (job_id, address_key, line);
        ALTER TABLE jobs ADD COLUMN IF NOT EXISTS name text;       -- the upload's name
        ALTER TABLE jobs ADD COLUMN IF NOT EXISTS columns text[];  -- a CSV upload's header
        -- where the address is in cells (a JSON or text upload's cells are the address)
        ALTER TABLE jobs ADD COLUMN IF NOT EXISTS email_cell integer;
    """),
]
