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

Whatever text an input line holds becomes a submission intake can take
(:func:`submittable_email`): the engine then gives a non-address its ``syntax`` verdict. A
submission that breaks the schema but names its job is *salvaged* (:meth:`Submission.salvage`)
so that its job still completes; only one without a job goes to the dead letters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.base import (
    SCHEMA_VERSION,
    EventRecord,
    SchemaError,
    field_bool,
    field_dict,
    field_opt_str,
    field_str,
    load_object,
    utc_now_iso,
)

__all__ = ["Submission", "submission_key", "submittable_email", "EMAIL_MAX_CHARS"]

#: the longest ``email`` a submission carries; longer input is cut (it is no address: the
#: engine refuses anything over 1,000 characters with a ``syntax`` verdict)
EMAIL_MAX_CHARS = 2000
#: what JSON, Kafka keys and Postgres text cannot all carry: NUL and lone surrogates
_UNCARRIABLE = re.compile("[\x00\ud800-\udfff]")


def submittable_email(text: str) -> str:
    r"""What a submission carries for the input ``text``: NUL and lone surrogates become
    U+FFFD, and the text is cut to :data:`EMAIL_MAX_CHARS`. Every producer (CLI, API,
    ``streams.client``) and intake's decoding apply this one rule, so an input's identity is
    the same on both sides.

    >>> submittable_email("a\x00b@ok.test"), len(submittable_email("x" * 5000))
    ('a\ufffdb@ok.test', 2000)
    """
    if len(text) > EMAIL_MAX_CHARS:
        text = text[:EMAIL_MAX_CHARS]
    return _UNCARRIABLE.sub("\ufffd", text)


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
    #: past the daily probe budget of its domain or MX host, wait for the next day (true),
    #: or end ``unknown``/``probe_budget`` at once (false)
    wait_for_budget: bool = True
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def create(cls, job_id: str, email: str, **extra: Any) -> Submission:
        return cls(job_id=job_id, email=submittable_email(email),
                   submitted_at=extra.pop("submitted_at", None) or utc_now_iso(), **extra)

    @classmethod
    def decode(cls, raw: bytes | None) -> Submission:
        """Validate and decode; raises :class:`~schemas.base.SchemaError`."""
        data = load_object(raw)
        return cls(
            job_id=field_str(data, "job_id", max_len=200),
            # the address itself is judged by the engine (a bad one, empty or with a NUL,
            # gets a syntax verdict); here it only has to be a string
            email=_email(data),
            request_id=field_opt_str(data, "request_id", max_len=500),
            metadata=field_dict(data, "metadata"),
            submitted_at=field_opt_str(data, "submitted_at", max_len=64),
            replay_id=field_opt_str(data, "replay_id", max_len=200),
            wait_for_budget=field_bool(data, "wait_for_budget", True),
        )

    @classmethod
    def salvage(cls, raw: bytes | None) -> Submission | None:
        """What can be kept of a submission :meth:`decode` refused: its job (and replay),
        with the ``email`` as sent, in JSON when it was no string. ``None`` when not even
        the job is known (that one is a dead letter: no job waits for it).

        >>> Submission.salvage(b'{"job_id": "j1", "email": 42, "metadata": [1]}').email
        '42'
        >>> Submission.salvage(b'{"email": "a@b.com"}') is None
        True
        """
        try:
            data = orjson.loads(raw or b"")  # any size: Kafka bounds it
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        try:
            job_id = field_str(data, "job_id", max_len=200)
        except SchemaError:
            return None
        try:
            replay_id = field_opt_str(data, "replay_id", max_len=200)
        except SchemaError:
            replay_id = None
        value = data.get("email")
        text = value if isinstance(value, str) else (
            "" if value is None else orjson.dumps(value).decode())
        return cls(job_id=job_id, email=submittable_email(text), replay_id=replay_id)


def _email(data: dict[str, Any]) -> str:
    value = data.get("email")
    if value is None:
        raise SchemaError("missing field 'email'")
    if not isinstance(value, str):
        raise SchemaError(f"field 'email' must be a string, got {type(value).__name__}")
    return submittable_email(value)
