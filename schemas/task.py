"""``AddressTask``: an address on its way through the ``by-domain`` and ``retries`` topics.

Keyed by the address's ASCII domain, so every address of a domain lands on one partition
and can share SMTP sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.base import (
    SCHEMA_VERSION,
    EventRecord,
    SchemaError,
    field_bool,
    field_dict,
    field_int,
    field_opt_str,
    field_str,
    load_object,
)

__all__ = ["AddressTask"]


@dataclass(slots=True)
class AddressTask(EventRecord):
    job_id: str
    email: str
    domain: str
    dedupe_key: str
    #: ``topic:partition:offset`` of the submission it came from
    source: str
    attempt: int = 1
    request_id: str | None = None
    metadata: dict[str, Any] | None = None
    submitted_at: str | None = None
    replay_id: str | None = None
    #: for the retries topics: when to try again (epoch seconds) and why
    due_at: float | None = None
    last_reason: str | None = None
    #: what intake's syntax check made of ``email`` (``local``, ``domain``,
    #: ``normalized``, ``display_name``, ``smtputf8``), so the domain stage need not parse
    #: it again; absent in events of older versions
    address: dict[str, Any] | None = None
    #: the earlier attempts' outcomes (``attempt``, ``reason``, ``smtp_code``, ``at``),
    #: oldest first; absent on a first attempt and in events of older versions
    history: list[dict[str, Any]] | None = None
    #: past the daily probe budget of its domain or MX host, wait for the next day (true),
    #: or end ``unknown``/``probe_budget`` at once (false)
    wait_for_budget: bool = True
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def decode(cls, raw: bytes | None) -> AddressTask:
        data = load_object(raw)
        due = data.get("due_at")
        if due is not None and (not isinstance(due, int | float) or isinstance(due, bool)):
            raise SchemaError("field 'due_at' must be a number")
        return cls(
            job_id=field_str(data, "job_id", max_len=200),
            email=field_str(data, "email", max_len=2000),
            domain=field_str(data, "domain", max_len=300),
            dedupe_key=field_str(data, "dedupe_key", max_len=2000),
            source=field_str(data, "source", max_len=400),
            attempt=field_int(data, "attempt", 1),
            request_id=field_opt_str(data, "request_id"),
            metadata=field_dict(data, "metadata"),
            submitted_at=field_opt_str(data, "submitted_at"),
            replay_id=field_opt_str(data, "replay_id"),
            due_at=float(due) if due is not None else None,
            last_reason=field_opt_str(data, "last_reason"),
            # a hint only: anything but an object is ignored (the address is parsed again)
            address=address if isinstance(address := data.get("address"), dict) else None,
            history=_history(data.get("history")),
            wait_for_budget=field_bool(data, "wait_for_budget", True),
        )


def _history(value: Any) -> list[dict[str, Any]] | None:
    """The attempts of a task: a list of objects (at most 20 kept, the newest), else None.

    >>> _history([{"attempt": 1, "reason": "greylisted"}, 7]), _history("x")
    ([{'attempt': 1, 'reason': 'greylisted'}], None)
    """
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, dict)][-20:] or None
