"""Turning an engine result into a ``VerdictEvent`` (shared by every stage that decides)."""

from __future__ import annotations

import os
import socket

from checks.model import VerificationResult, to_jsonable
from checks.score import score
from schemas import AddressTask, Submission, VerdictEvent
from schemas.base import utc_now_iso

__all__ = ["verdict_event", "WORKER_ID"]

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def verdict_event(origin: Submission | AddressTask, result: VerificationResult, *,
                  dedupe_key: str, attempt: int, source: str) -> VerdictEvent:
    """The final verdict event for ``result`` of an address that came from ``origin``."""
    evidence = to_jsonable(result.evidence)
    return VerdictEvent(
        job_id=origin.job_id, email=origin.email, normalized=result.normalized,
        verdict=result.verdict.value, reason=result.reason.value, dedupe_key=dedupe_key,
        attempt=attempt, checked_at=utc_now_iso(), evidence=evidence,
        temporary=result.temporary, request_id=origin.request_id, metadata=origin.metadata,
        replay_id=origin.replay_id, source=source, worker=WORKER_ID,
        score=score(result, attempts=attempt),
    )
