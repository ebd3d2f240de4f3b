"""Ack events in offset order, whatever order their work completes in.

Faust commits the first run of consecutive acked offsets of a partition, but its gap check
(``Consumer._new_offset``, faust-streaming issue #606) can commit past an unacked event
right after the committed offset, and skips the check on a fresh consumer group. So when
work inside a partition completes out of order — the domain stage checks many domains at
once — an out-of-order ack can lose an event on a crash.

:class:`OrderedAckWindow` keeps, per partition, the events in flight in offset order and
acks only the completed prefix. Its bound is the stage's backpressure: :meth:`admit`
waits while a partition has ``max_in_flight`` unfinished events, or holds ``max_held``
events in all (finished ones wait for an earlier one to be acked). Counting only the
unfinished ones keeps the stage reading while one slow event (an address queued behind a
polite MX host) holds back the acks: the ones after it that finished make no room
otherwise, and the hosts with work left would run dry.

>>> import asyncio
>>> async def demo() -> list[int]:
...     acked: list[int] = []
...     window = OrderedAckWindow(10, acked.append)
...     a = await window.admit("tp0", 0, 0)
...     b = await window.admit("tp0", 1, 1)
...     window.complete(b)          # finished first, but offset 0 is still in flight
...     before = list(acked)
...     window.complete(a)          # now 0 and 1 are acked, in order
...     return before + [-1] + acked
>>> asyncio.run(demo())
[-1, 0, 1]
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["OrderedAckWindow", "Ticket"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Ticket:
    """Identifies one admitted event (``generation`` guards against revoked partitions)."""

    tp: Hashable
    offset: int
    generation: int


class _Partition(Generic[E]):
    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.entries: OrderedDict[int, tuple[E, bool]] = OrderedDict()
        self.unfinished = 0
        self.space = asyncio.Event()
        self.space.set()


class OrderedAckWindow(Generic[E]):
    """A bounded, per-partition window of in-flight events acked in offset order."""

    def __init__(self, max_in_flight: int, ack: Callable[[E], object], *,
                 max_held: int | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self.max_held = max(max_in_flight, max_held or 4 * max_in_flight)
        self._ack = ack
        self._parts: dict[Hashable, _Partition[E]] = {}
        self._generation = 0
        self.rewinds = 0  #: times a partition's offsets went back (see :meth:`_enter`)

    def in_flight(self, tp: Hashable | None = None) -> int:
        if tp is not None:
            part = self._parts.get(tp)
            return len(part.entries) if part else 0
        return sum(len(p.entries) for p in self._parts.values())

    def _part(self, tp: Hashable) -> _Partition[E]:
        part = self._parts.get(tp)
        if part is None:
            self._generation += 1
            part = self._parts[tp] = _Partition(self._generation)
        return part

    async def admit(self, tp: Hashable, offset: int, item: E) -> Ticket | None:
        """Register an event before its work starts; waits while the partition is full.

        None when the partition was revoked while the event waited: it was fetched for an
        assignment that is over, and the partition's next owner (maybe this worker again,
        from the committed offset) gets it redelivered. Admitting it would start the
        partition's new window at an offset the redelivery goes back before.
        """
        part = self._current(tp, offset)
        while self._full(part):
            part.space.clear()
            await part.space.wait()
            if self._parts.get(tp) is not part:
                return None
        return self._enter(part, tp, offset, item)

    def try_admit(self, tp: Hashable, offset: int, item: E) -> Ticket | None:
        """:meth:`admit` without waiting: None when the partition is full."""
        part = self._current(tp, offset)
        if self._full(part):
            return None
        return self._enter(part, tp, offset, item)

    def _current(self, tp: Hashable, offset: int) -> _Partition[E]:
        """The partition's window for ``offset``: a new one when the offset went back.

        Checked before any wait for room: the old events must not be acked while the
        ones before them are being redelivered.
        """
        part = self._part(tp)
        if part.entries and offset <= next(reversed(part.entries)):
            # The consumer went back (a reassignment this window was not told of, or a
            # seek): the events held are being redelivered, so they are forgotten, never
            # acked by us, exactly as on a revoke. Raising instead would crash the agent
            # and lose this event from the stream.
            self.rewinds += 1
            self.revoke([tp])
            part = self._part(tp)
        return part

    def _enter(self, part: _Partition[E], tp: Hashable, offset: int, item: E) -> Ticket:
        part.entries[offset] = (item, False)
        part.unfinished += 1
        return Ticket(tp, offset, part.generation)

    def _full(self, part: _Partition[E]) -> bool:
        return part.unfinished >= self.max_in_flight or len(part.entries) >= self.max_held

    def complete(self, ticket: Ticket) -> None:
        """Mark an event's work done; ack every completed event at the head, in order."""
        part = self._parts.get(ticket.tp)
        if part is None or part.generation != ticket.generation:
            return  # revoked: the event will be redelivered to the partition's new owner
        entry = part.entries.get(ticket.offset)
        if entry is None or entry[1]:
            return
        part.entries[ticket.offset] = (entry[0], True)
        part.unfinished -= 1
        while part.entries:
            offset, (item, done) = next(iter(part.entries.items()))
            if not done:
                break
            del part.entries[offset]
            self._ack(item)
        if not self._full(part):
            part.space.set()

    def revoke(self, tps: Iterable[Hashable]) -> None:
        """Forget revoked partitions: their in-flight events are never acked by us."""
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                part.space.set()  # wake admitters; they re-create the partition
