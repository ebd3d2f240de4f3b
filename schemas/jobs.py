"""``JobEvent``: job lifecycle on the ``jobs`` topic (keyed by ``job_id``).

* ``created`` — ``total`` submissions make up the job (sent by ``mailsift submit``/the API
  after the submissions; an upstream producer sends it when its list is complete);
* ``duplicate`` — a submission repeated an address already in the job (it shares that
  address's verdict; ``source`` names it);
* ``completed`` — every submission is accounted for; ``counts`` by verdict;
* ``deleted`` — the job was erased (``mailsift jobs delete``, ``DELETE /v1/jobs/{id}``):
  every reader of the log (the sinks, ``replay``, ``sink rebuild``, the job-state rebuild)
  leaves the job's other events alone from then on (see ``mailsift.erasure``).

A ``created`` event of a job submitted through the API names its ``owner``: a fingerprint
of the API token (never the token), so the job stays that token's after a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.base import (
    SCHEMA_VERSION,
    EventRecord,
    SchemaError,
    field_dict,
    field_opt_str,
    field_str,
    load_object,
    utc_now_iso,
)

__all__ = ["JobEvent", "JOB_KINDS"]

JOB_KINDS = frozenset({"created", "duplicate", "completed", "deleted"})


@dataclass(slots=True)
class JobEvent(EventRecord):
    job_id: str
    kind: str
    total: int | None = None
    counts: dict[str, int] | None = None
    source: str | None = None
    replay_id: str | None = None
    at: str | None = None
    owner: str | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def create(cls, job_id: str, kind: str, **extra: Any) -> JobEvent:
        return cls(job_id=job_id, kind=kind, at=utc_now_iso(), **extra)

    @classmethod
    def decode(cls, raw: bytes | None) -> JobEvent:
        data = load_object(raw)
        kind = field_str(data, "kind")
        if kind not in JOB_KINDS:
            raise SchemaError(f"field 'kind' must be one of {sorted(JOB_KINDS)}, got {kind!r}")
        total = data.get("total")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool)
                                  or total < 0):
            raise SchemaError("field 'total' must be a non-negative integer")
        return cls(job_id=field_str(data, "job_id"), kind=kind, total=total,
                   counts=field_dict(data, "counts"), source=field_opt_str(data, "source"),
                   replay_id=field_opt_str(data, "replay_id"), at=field_opt_str(data, "at"),
                   owner=field_opt_str(data, "owner", max_len=200))
