"""``Submission``: one address to verify, produced to the ``submissions`` topic.

Upstream systems produce JSON like::

    {"schema_version": 1, "job_id": "newsletter-2026-11", "email": "ann@example.com",
     "request_id": "row-17", "metadata": {"crm_id": 42},
     "submitted_at": "2026-11-25T14:00:00Z"}

keyed by :func:`submission_key` (``job_id/address``), so a big job spreads over every
partition and so over every worker; any key works (``job_id`` alone keeps a job on one
partition).

>>> s = Submission.decode(b'{"job_id": "j1", "email": "a@b.com"}')
>>> (s.job_id, s.email, s.schema_version)
('j1', 'a@b.com', 1)
>>> Submission.decode(b'{"job_id": "j1"}')
Traceback (most recent call last):
...
schemas.base.SchemaError: missing field 'email'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.base import (
    SCHEMA_VERSION,
    EventRecord,
    field_dict,
    field_opt_str,
    field_str,
    load_object,
    utc_now_iso,
)

__all__ = ["Submission", "submission_key"]


def submission_key(job_id: str, dedupe_key: str) -> bytes:
    """The Kafka key mailsift's own producers give a submission: ``job_id/dedupe_key``.

    ``dedupe_key`` is the address's identity as intake computes it (see
    ``streams.client.dedupe_key``), so every spelling of one mailbox shares a partition and
    the first one in the list is the one verified; different addresses spread over all
    partitions.

    >>> submission_key("j1", "ann@xn--bcher-kva.de")
    b'j1/ann@xn--bcher-kva.de'
    """
    return f"{job_id}/{dedupe_key}".encode()


@dataclass(slots=True)
class Submission(EventRecord):
    """An address submitted for verification as part of a job."""

    job_id: str
    email: str
    request_id: str | None = None
    metadata: dict[str, Any] | None = None
    submitted_at: str | None = None
    #: set on copies produced by ``mailsift replay`` (a replay run is tracked on its own)
    replay_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def create(cls, job_id: str, email: str, **extra: Any) -> Submission:
        return cls(job_id=job_id, email=email, submitted_at=extra.pop("submitted_at", None)
                   or utc_now_iso(), **extra)

    @classmethod
    def decode(cls, raw: bytes | None) -> Submission:
        """Validate and decode; raises :class:`~schemas.base.SchemaError`."""
        data = load_object(raw)
        return cls(
            job_id=field_str(data, "job_id", max_len=200),
            # the address itself is judged by the engine (a bad one gets a syntax verdict);
            # here it only has to be a string of sane size
            email=field_str(data, "email", max_len=2000),
            request_id=field_opt_str(data, "request_id", max_len=500),
            metadata=field_dict(data, "metadata"),
            submitted_at=field_opt_str(data, "submitted_at", max_len=64),
            replay_id=field_opt_str(data, "replay_id", max_len=200),
        )
