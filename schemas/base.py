"""Decoding helpers shared by the event records."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["SCHEMA_VERSION", "SchemaError", "load_object", "field_str", "field_opt_str",
           "field_int", "field_dict", "field_text", "utc_now_iso", "MAX_EVENT_BYTES",
           "EventRecord"]

SCHEMA_VERSION = 1
#: a submission is a few hundred bytes; anything far larger is not one
MAX_EVENT_BYTES = 64 * 1024


class SchemaError(ValueError):
    """The event does not match its schema; the message says how, in one line."""


class EventRecord:
    """Base of the event records: slotted dataclasses, encoded as JSON objects by orjson
    (fields in declaration order, ``None`` included).

    >>> from dataclasses import dataclass
    >>> @dataclass(slots=True)
    ... class Point(EventRecord):
    ...     x: int
    ...     y: int | None = None
    >>> Point(1).dumps()
    b'{"x":1,"y":null}'
    >>> Point(1, 2).asdict()
    {'x': 1, 'y': 2}
    """

    __slots__ = ()

    def dumps(self) -> bytes:
        """The record as one JSON object (UTF-8)."""
        return orjson.dumps(self)

    def asdict(self) -> dict[str, Any]:
        """The fields as a new dict (values are not copied)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}  # type: ignore[attr-defined]


def utc_now_iso() -> str:
    """The current UTC time in ISO 8601 with milliseconds and a ``Z``.

    Every verdict is stamped, so the seconds part is formatted once per second.

    >>> utc_now_iso().endswith("Z"), len(utc_now_iso())
    (True, 24)
    >>> from datetime import datetime
    >>> datetime.fromisoformat(utc_now_iso()).tzinfo is not None
    True
    """
    global _last_second, _last_prefix
    now = time.time()
    second = int(now)
    if second != _last_second:
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second
    return f"{_last_prefix}.{int((now - second) * 1000):03d}Z"


_last_second = -1
_last_prefix = ""


def load_object(raw: bytes | None, *, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Parse ``raw`` as one JSON object, checking size and schema version.

    >>> load_object(b'{"a": 1}')
    {'a': 1}
    >>> load_object(b'[1]')
    Traceback (most recent call last):
    ...
    schemas.base.SchemaError: expected a JSON object, got list
    """
    if raw is None:
        raise SchemaError("empty event (no value)")
    if len(raw) > max_bytes:
        raise SchemaError(f"event of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema_version {version!r} "
                          f"(this worker reads up to {SCHEMA_VERSION})")
    return data


def field_str(data: Mapping[str, Any], name: str, *, max_len: int = 4096) -> str:
    value = data.get(name)
    if value is None:
        raise SchemaError(f"missing field {name!r}")
    if not isinstance(value, str):
        raise SchemaError(f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise SchemaError(f"field {name!r} is empty")
    if len(value) > max_len:
        raise SchemaError(f"field {name!r} is longer than {max_len} characters")
    if "\x00" in value:
        raise SchemaError(f"field {name!r} contains a NUL character")
    return value


def field_text(data: Mapping[str, Any], name: str, *, max_len: int = 4096) -> str:
    """A string field that may be blank (an input as given: a blank one is a fact too).

    >>> field_text({"email": "  "}, "email")
    '  '
    """
    value = data.get(name)
    if not isinstance(value, str):
        raise SchemaError(f"missing field {name!r}" if value is None else
                          f"field {name!r} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise SchemaError(f"field {name!r} is longer than {max_len} characters")
    if "\x00" in value:
        raise SchemaError(f"field {name!r} contains a NUL character")
    return value


def field_opt_str(data: Mapping[str, Any], name: str, *, max_len: int = 4096) -> str | None:
    if data.get(name) is None:
        return None
    return field_str(data, name, max_len=max_len)


def field_int(data: Mapping[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(f"field {name!r} must be an integer, got {type(value).__name__}")
    return value


def field_bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean field; absent or null is ``default``.

    >>> field_bool({}, "x", True), field_bool({"x": False}, "x", True)
    (True, False)
    """
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SchemaError(f"field {name!r} must be true or false, got {type(value).__name__}")
    return value


def field_dict(data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SchemaError(f"field {name!r} must be an object, got {type(value).__name__}")
    return value
