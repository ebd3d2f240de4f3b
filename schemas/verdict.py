"""``VerdictEvent``: the final verdict for one address of a job, on the ``verdicts`` topic.

Keyed by :func:`verdict_key` (``job_id/dedupe_key``), so a big job's verdicts spread over
every partition (and so over every worker's progress and sink stages). ``attempt`` and
``checked_at`` tell a re-verification (retry or replay) from an earlier verdict for the
same address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.base import (
    SCHEMA_VERSION,
    EventRecord,
    SchemaError,
    field_dict,
    field_int,
    field_opt_str,
    field_str,
    field_text,
    load_object,
)

__all__ = ["VerdictEvent", "verdict_key"]


def verdict_key(job_id: str, dedupe_key: str) -> bytes:
    """The Kafka key of a verdict.

    >>> verdict_key("j1", "ann@example.com")
    b'j1/ann@example.com'
    """
    return f"{job_id}/{dedupe_key}".encode()


@dataclass(slots=True)
class VerdictEvent(EventRecord):
    job_id: str
    email: str
    normalized: str | None
    verdict: str
    reason: str
    #: the address's identity within the job (case-insensitive local part, ASCII domain)
    dedupe_key: str
    attempt: int
    checked_at: str
    evidence: dict[str, Any]
    temporary: bool = False
    request_id: str | None = None
    metadata: dict[str, Any] | None = None
    replay_id: str | None = None
    source: str | None = None
    #: which worker decided (``host:pid``), for operations
    worker: str | None = None
    #: 0–100, how safe it is to send (``checks.score``; absent in events before it existed)
    score: int | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def decode(cls, raw: bytes | None) -> VerdictEvent:
        data = load_object(raw, max_bytes=1024 * 1024)
        temporary = data.get("temporary", False)
        if not isinstance(temporary, bool):
            raise SchemaError("field 'temporary' must be a boolean")
        return cls(
            job_id=field_str(data, "job_id"), email=field_text(data, "email"),
            normalized=field_opt_str(data, "normalized"), verdict=field_str(data, "verdict"),
            reason=field_str(data, "reason"), dedupe_key=field_str(data, "dedupe_key"),
            attempt=field_int(data, "attempt", 1), checked_at=field_str(data, "checked_at"),
            evidence=field_dict(data, "evidence") or {}, temporary=temporary,
            request_id=field_opt_str(data, "request_id"), metadata=field_dict(data, "metadata"),
            replay_id=field_opt_str(data, "replay_id"), source=field_opt_str(data, "source"),
            worker=field_opt_str(data, "worker"), score=_score(data),
        )


def _score(data: dict[str, Any]) -> int | None:
    if data.get("score") is None:
        return None
    value = field_int(data, "score", 0)
    if not 0 <= value <= 100:
        raise SchemaError(f"field 'score' must be from 0 to 100, got {value}")
    return value
