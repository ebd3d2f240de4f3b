"""Decoding a batch of consumed events, and dead-lettering the ones that are not what
their topic promises (shared by every stage)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from agents.ports import Outcome, RawEvent, Record
from schemas import DeadLetter, SchemaError, VerdictEvent

__all__ = ["decode_each", "dead_letters", "decode_verdict", "SharedDecode"]

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


class SharedDecode(Generic[T]):
    """``decode``, remembering its last ``size`` results by the bytes decoded.

    Three stages of a worker read each verdict (progress, the Postgres sink, the RabbitMQ
    bridge), and Faust hands them the same message: one decode serves all three (a
    verdict's decode is about 25 µs; the lookup hashes the value once, as ``bytes`` keeps
    its hash). The decode must be pure and its results must not be changed by their
    users: they are shared. A malformed value is not remembered (it raises each time).

    >>> calls = []
    >>> def decode(raw: bytes | None) -> int:
    ...     calls.append(raw)
    ...     return len(raw or b"")
    >>> shared = SharedDecode(decode, size=2)
    >>> [shared(b"ab"), shared(b"ab"), shared(b"c"), shared(b"d"), shared(b"ab")], len(calls)
    ([2, 2, 1, 1, 2], 4)
    """

    def __init__(self, decode: Callable[[bytes | None], T], size: int = 2048) -> None:
        self._decode = decode
        self._size = size
        self._seen: dict[bytes, T] = {}

    def __call__(self, raw: bytes | None) -> T:
        if raw is None:
            return self._decode(raw)
        seen = self._seen
        try:
            return seen[raw]
        except KeyError:
            found = seen[raw] = self._decode(raw)
            if len(seen) > self._size:
                del seen[next(iter(seen))]  # the oldest
            return found


#: the verdict decode the verdict stages of a worker share
decode_verdict: SharedDecode[VerdictEvent] = SharedDecode(VerdictEvent.decode)


def dead_letters(topic: str, failed: Sequence[tuple[RawEvent, str]]) -> list[Record]:
    """The dead-letter records of ``(event, why)`` pairs (each logged in one line)."""
    records = []
    for event, why in failed:
        log.warning("dead letter from %s: %s", event.source, why)
        letter = DeadLetter.of(event.topic, event.partition, event.offset, event.key,
                               event.value, why)
        records.append(Record(topic, event.key, letter.dumps()))
    return records
