"""Decoding a batch of consumed events, and dead-lettering the ones that are not what
their topic promises (shared by every stage)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from agents.ports import Outcome, RawEvent, Record
from schemas import DeadLetter, SchemaError

__all__ = ["decode_each", "dead_letters"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def decode_each(events: Sequence[RawEvent], outcomes: list[Outcome],
                decode: Callable[[bytes | None], T], *, topic: str | None = None
                ) -> list[tuple[int, T]]:
    """``(index, record)`` for each event (of ``topic`` only, when given) that ``decode``
    accepts; a malformed one gets the :class:`~schemas.SchemaError` text as its outcome.

    >>> outcomes: list[Outcome] = [None, None]
    >>> def number(raw: bytes | None) -> int:
    ...     if not raw or not raw.isdigit():
    ...         raise SchemaError("not a number")
    ...     return int(raw)
    >>> events = [RawEvent("t", 0, 0, None, b"7"), RawEvent("t", 0, 1, None, b"x")]
    >>> decode_each(events, outcomes, number), outcomes
    ([(0, 7)], [None, 'not a number'])
    """
    out = []
    for i, event in enumerate(events):
        if topic is not None and event.topic != topic:
            continue
        try:
            out.append((i, decode(event.value)))
        except SchemaError as exc:
            outcomes[i] = str(exc)
    return out


def dead_letters(topic: str, failed: Sequence[tuple[RawEvent, str]]) -> list[Record]:
    """The dead-letter records of ``(event, why)`` pairs (each logged in one line)."""
    records = []
    for event, why in failed:
        log.warning("dead letter from %s: %s", event.source, why)
        letter = DeadLetter.of(event.topic, event.partition, event.offset, event.key,
                               event.value, why)
        records.append(Record(topic, event.key, letter.dumps()))
    return records
