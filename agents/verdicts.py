"""Turning an engine result into a ``VerdictEvent`` (shared by every stage that decides)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from agents.ports import RawEvent, Record
from checks.engine import failed_result
from checks.model import ParsedAddress, VerificationResult, to_jsonable
from checks.score import score
from schemas import AddressTask, SchemaError, Submission, VerdictEvent, verdict_key
from schemas.base import utc_now_iso

__all__ = ["verdict_event", "verdict_record", "evidence_with_attempts", "attempt_record",
           "failed_verdicts", "WORKER_ID"]

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


def verdict_record(topic: str, origin: Submission | AddressTask, result: VerificationResult,
                   *, dedupe_key: str, attempt: int, source: str) -> Record:
    """The ``verdicts`` record of :func:`verdict_event` (keyed by job and address, with
    its verdict and reason for the metrics)."""
    verdict = verdict_event(origin, result, dedupe_key=dedupe_key, attempt=attempt,
                            source=source)
    return Record(topic, verdict_key(origin.job_id, dedupe_key), verdict.dumps(),
                  verdict=(verdict.verdict, verdict.reason))


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


def failed_verdicts(topic: str, failed: Sequence[tuple[RawEvent, str]]) -> list[Record]:
    """The final verdicts (``unknown``/``check_failed``, the error in ``evidence.error``)
    of the address tasks a stage could not handle (each dead-lettered with ``why``), so
    their jobs complete. An event that is no task names no job it could complete: none.
    """
    records: list[Record] = []
    for event, why in failed:
        try:
            task = AddressTask.decode(event.value)
        except SchemaError:
            continue
        parsed = ParsedAddress.from_parts(task.email, task.domain, task.dedupe_key,
                                          task.address)
        result = failed_result(task.email, parsed.normalized if parsed else None, why)
        records.append(verdict_record(topic, task, result, dedupe_key=task.dedupe_key,
                                      attempt=task.attempt, source=task.source))
    return records
