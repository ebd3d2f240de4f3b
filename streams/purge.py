"""The retention purge: jobs older than ``MAILSIFT_RETENTION_DAYS`` leave Postgres.

A job is expired when nothing of it (a run created or completed, a verdict checked) is
newer than the retention; then all of it goes at once, so no job is ever half purged.
Every worker with the Postgres sink runs :func:`purge_forever`; an advisory lock lets one
purge run at a time (the others find nothing to do), in statements of a few hundred
jobs. Redis needs no purge: a job's keys expire on their own (``Settings.job_ttl_seconds``),
and Kafka's topics drop records older than their ``retention.ms`` (``streams.topics``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from agents.outage import is_transient
from mailsift.settings import Settings

__all__ = ["Purgeable", "purge_cutoff", "purge_once", "purge_forever"]

log = logging.getLogger(__name__)


class Purgeable(Protocol):
    async def purge_expired(self, cutoff: datetime) -> Any:
        """Remove the jobs with no activity since ``cutoff``; what was removed."""
        ...


def purge_cutoff(settings: Settings, now: datetime | None = None) -> datetime:
    """The instant before which a job's activity is expired.

    >>> from mailsift.settings import load_settings
    >>> s = load_settings({"MAILSIFT_RETENTION_DAYS": "30"}, dotenv=False)
    >>> purge_cutoff(s, datetime(2026, 12, 31, tzinfo=UTC)).isoformat()
    '2026-12-01T00:00:00+00:00'
    """
    return (now or datetime.now(UTC)) - timedelta(seconds=settings.retention_seconds)


async def purge_once(settings: Settings, sink: Purgeable) -> Any:
    """One purge now; what it removed (logged when it removed anything)."""
    removed = await sink.purge_expired(purge_cutoff(settings))
    if getattr(removed, "jobs", 0):
        log.info("retention purge: removed %d jobs (%d runs, %d verdicts) older than %g days",
                 removed.jobs, removed.runs, removed.verdicts, settings.retention_days)
    return removed


async def purge_forever(settings: Settings, sink: Purgeable) -> None:
    """:func:`purge_once` every ``MAILSIFT_PURGE_INTERVAL`` seconds, from the start. A purge
    that fails (Postgres away, a deadlock, a timeout) is one warning line and is tried
    again at the next interval: it never stops the worker."""
    while True:
        try:
            await purge_once(settings, sink)
        except Exception as exc:  # noqa: BLE001 - the stages must go on whatever it was
            what = "Postgres did not answer" if is_transient(exc) else "it failed"
            log.warning("retention purge: %s (%s: %s); trying again in %g s", what,
                        type(exc).__name__, exc, settings.purge_interval)
        await asyncio.sleep(settings.purge_interval)
