"""Submitting an accepted list in the background, after the 202.

Two passes over the rows (an upload's spooled file, or a JSON body's list), in bounded
memory:

1. **store**: each row with its address key goes to Postgres (``job_inputs``, batches of
   :data:`BATCH`), so results keep the input's columns and order, duplicates included;
2. **produce**: one submission per row to Kafka, then the job's ``created`` event.

The job's record in the registry says where it is: ``state`` ``submitting`` with
``stored`` and then ``submitted`` counts, then ``submitted`` (from there the workers'
progress tells the rest), or ``failed`` with an ``error`` line. A Postgres outage is
waited out; an erased job stops at the next batch (its record is gone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

from agents.outage import retry_transient
from mailsift.api.access import Refund
from mailsift.api.state import ApiState
from mailsift.api.uploads import UploadRow

__all__ = ["Accepted", "deliver", "BATCH"]

log = logging.getLogger("mailsift.api")

#: rows stored per statement (and per turn of the thread that computes their keys)
BATCH = 2000


@dataclass
class Accepted:
    """A list the API answered 202 for: what to submit, and how."""

    job_id: str
    owner: str
    rows: Callable[[], Iterator[UploadRow]]  # a fresh pass over the rows, each call
    bound: int                                # the quota taken (at least the row count)
    refund: Refund
    wait_for_budget: bool = True
    cleanup: Callable[[], None] | None = None


def _keyed(rows: Iterator[UploadRow], n: int, allow_test_tld: bool
           ) -> list[tuple[int, str, tuple[str, ...]]]:
    """The next ``n`` rows with their address keys (as intake keys them)."""
    # aiokafka is slow to import: streams.client is loaded only where it is used
    from streams.client import dedupe_key

    return [(r.line, dedupe_key(r.email, allow_test_tld=allow_test_tld), tuple(r.cells))
            for r in islice(rows, n)]


async def _store(state: ApiState, job: Accepted) -> int | None:
    """Pass 1: the rows into Postgres; how many there were (None: the job was erased)."""
    rows = job.rows()
    stored = 0
    try:
        while True:
            # the keys take ~60 µs a row: a thread keeps the API answering meanwhile
            batch = await asyncio.to_thread(_keyed, rows, BATCH, state.settings.allow_test_tld)
            if not batch:
                return stored
            await retry_transient(f"job {job.job_id}: storing its rows",
                                  lambda b=batch: state.sink.write_inputs(job.job_id, b))  # type: ignore[misc]
            stored += len(batch)
            if not await state.jobs.update(job.job_id, stored=stored):
                return None
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


async def deliver(state: ApiState, job: Accepted) -> None:
    """Store and produce ``job``'s rows (the background half of ``POST /v1/jobs``)."""
    # aiokafka is slow to import: only what talks to Kafka loads it
    from streams.client import kafka_calls, submit_emails

    try:
        total = await _store(state, job)
        if total is None:
            log.info("job %s was erased while it was being submitted", job.job_id,
                     extra={"job_id": job.job_id})
            return
        await job.refund(job.bound - total)
        await state.jobs.update(job.job_id, total=total)

        async def progress(n: int) -> None:
            await state.jobs.update(job.job_id, submitted=n)

        with kafka_calls(state.settings):
            await submit_emails(state.settings, (r.email for r in job.rows()),
                                job_id=job.job_id, owner=job.owner,
                                wait_for_budget=job.wait_for_budget, on_progress=progress)
        if await state.jobs.update(job.job_id, state="submitted", submitted=total):
            state.metrics.jobs_submitted.inc()
            state.metrics.addresses_submitted.inc(total)
    except asyncio.CancelledError:
        await _failed(state, job, "the API stopped while the job was being submitted; "
                      "submit the list again")
        raise
    except Exception as exc:
        text = str(exc) or type(exc).__name__
        log.warning("job %s: submitting it failed: %s", job.job_id, text,
                    extra={"job_id": job.job_id})
        await _failed(state, job, f"submitting the list failed: {text}")
    finally:
        if job.cleanup is not None:
            job.cleanup()


async def _failed(state: ApiState, job: Accepted, error: str) -> None:
    try:
        await asyncio.shield(state.jobs.update(job.job_id, state="failed", error=error))
    except Exception as exc:  # Redis is down too: the log line is what is left
        log.warning("job %s: %s (and its state could not be saved: %s)", job.job_id, error,
                    exc, extra={"job_id": job.job_id})
