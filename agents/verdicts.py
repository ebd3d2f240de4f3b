"""Turning an engine result into a ``VerdictEvent`` (shared by every stage that decides)."""

from __future__ import annotations

import os
import socket
from typing import Any

from checks.model import VerificationResult, to_jsonable
from checks.score import score
from schemas import AddressTask, Submission, VerdictEvent
from schemas.base import utc_now_iso

__all__ = ["verdict_event", "evidence_with_attempts", "attempt_record", "WORKER_ID"]

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def verdict_event(origin: Submission | AddressTask, result: VerificationResult, *,
                  dedupe_key: str, attempt: int, source: str) -> VerdictEvent:
    """The final verdict event for ``result`` of an address that came from ``origin``."""
    history = origin.history if isinstance(origin, AddressTask) else None
    evidence = evidence_with_attempts(result, history or [], attempt)
    return VerdictEvent(
        job_id=origin.job_id, email=origin.email, normalized=result.normalized,
        verdict=result.verdict.value, reason=result.reason.value, dedupe_key=dedupe_key,
        attempt=attempt, checked_at=utc_now_iso(), evidence=evidence,
        temporary=result.temporary, request_id=origin.request_id, metadata=origin.metadata,
        replay_id=origin.replay_id, source=source, worker=WORKER_ID,
        score=score(result, attempts=attempt),
    )


def evidence_with_attempts(result: VerificationResult, history: list[dict[str, Any]],
                           attempt: int) -> dict[str, Any]:
    """``result``'s evidence as JSON; after earlier attempts (``history``), with
    ``attempts`` (every attempt, this one last) and ``greylisted`` ("accepted after
    greylisting" said outright). Used by the pipeline and by ``mailsift check --retry``."""
    evidence: dict[str, Any] = to_jsonable(result.evidence)
    if history:
        evidence["attempts"] = [*history, attempt_record(attempt, result)]
        evidence["greylisted"] = any(h.get("reason") == "greylisted" for h in history)
    return evidence


def attempt_record(attempt: int, result: VerificationResult) -> dict[str, Any]:
    """One attempt's outcome, as kept in ``AddressTask.history`` and ``evidence.attempts``."""
    smtp = result.evidence.smtp
    code = smtp.reply.code if smtp is not None and smtp.reply is not None else None
    return {"attempt": attempt, "reason": result.reason.value, "smtp_code": code,
            "at": utc_now_iso()}
