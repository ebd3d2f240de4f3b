"""Rows/second of the Postgres sink (batched upserts) on the local stack's Postgres.

Writes N synthetic verdict events in batches into a fresh database, then writes them all
again (every one a redelivery: the upsert must keep one row each), and reports both rates.

    .venv/bin/python -m bench.sink_throughput --rows 50000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from mailsift.settings import load_settings
from schemas import VerdictEvent
from sinks.postgres import PostgresSink


async def fresh_database(dsn: str) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(dsn)
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path=f"/{name}")), name


def events(n: int, job: str) -> list[VerdictEvent]:
    evidence = {"mx": {"status": "ok", "hosts": [{"preference": 10, "host": "mx.example.test",
                                                  "addresses": ["192.0.2.1"]}]},
                "smtp": {"reply": {"code": 250, "enhanced": "2.1.5", "message": "OK"}},
                "timings": {"dns": 0.01, "smtp": 0.2}}
    return [VerdictEvent(job_id=job, email=f"user{i}@d{i % 500}.test",
                         normalized=f"user{i}@d{i % 500}.test", verdict="deliverable",
                         reason="ok", dedupe_key=f"user{i}@d{i % 500}.test", attempt=1,
                         checked_at="2026-11-25T12:00:00.000Z", evidence=evidence)
            for i in range(n)]


async def main(rows: int, batch: int, concurrency: int) -> None:
    settings = load_settings()
    dsn, name = await fresh_database(settings.database_url)
    sink = PostgresSink(dsn, max_connections=concurrency)
    await sink.migrate()
    data = events(rows, "bench")
    batches = [data[i:i + batch] for i in range(0, rows, batch)]
    limit = asyncio.Semaphore(concurrency)

    async def write(chunk: list[VerdictEvent]) -> None:
        async with limit:
            await sink.write_verdicts(chunk)

    try:
        for label in ("insert", "redelivery (upsert, no new rows)"):
            started = time.perf_counter()
            await asyncio.gather(*(write(b) for b in batches))
            seconds = time.perf_counter() - started
            stored = await (await sink.pool()).fetchval("SELECT count(*) FROM verdicts")
            print(f"{label:<34} {rows} rows in {seconds:6.2f} s = {rows / seconds:9.0f} rows/s"
                  f"  (batch {batch}, {concurrency} connections; table holds {stored})")
    finally:
        await sink.close()
        conn = await asyncpg.connect(urlunsplit(urlsplit(dsn)._replace(path="/postgres")))
        try:
            await conn.execute(f'DROP DATABASE "{name}"')
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.batch, args.concurrency))
