"""``DeadLetter``: an event no agent could process, with where it came from and why."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from schemas.base import (
    SCHEMA_VERSION,
    EventRecord,
    field_int,
    field_opt_str,
    field_str,
    load_object,
    utc_now_iso,
)

__all__ = ["DeadLetter"]


@dataclass(slots=True)
class DeadLetter(EventRecord):
    topic: str
    partition: int
    offset: int
    #: the raw value: as text when it is UTF-8, else base64 (``payload_encoding`` says)
    payload: str | None
    payload_encoding: str
    error: str
    key: str | None = None
    at: str | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, topic: str, partition: int, offset: int, key: bytes | None,
           value: bytes | None, error: str) -> DeadLetter:
        """The dead letter of a raw event.

        >>> DeadLetter.of("t", 0, 5, None, b"\\xff", "bad").payload_encoding
        'base64'
        """
        payload, encoding = None, "none"
        if value is not None:
            try:
                payload, encoding = value.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                payload, encoding = base64.b64encode(value).decode("ascii"), "base64"
        return cls(topic=topic, partition=partition, offset=offset, payload=payload,
                   payload_encoding=encoding, error=error[:2000],
                   key=key.decode("utf-8", "replace") if key is not None else None,
                   at=utc_now_iso())

    @classmethod
    def decode(cls, raw: bytes | None) -> DeadLetter:
        data = load_object(raw, max_bytes=4 * 1024 * 1024)
        return cls(topic=field_str(data, "topic"), partition=field_int(data, "partition", 0),
                   offset=field_int(data, "offset", 0),
                   payload=data.get("payload") if isinstance(data.get("payload"), str) else None,
                   payload_encoding=field_str(data, "payload_encoding"),
                   error=field_str(data, "error"), key=field_opt_str(data, "key"),
                   at=field_opt_str(data, "at"))
