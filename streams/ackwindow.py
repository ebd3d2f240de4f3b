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

A partition revoked and given back (a rebalance: the same worker again) is redelivered from
its committed offset. Its events whose work finished (acked, but maybe not committed yet:
the last ``max_held`` acked per partition are remembered, and faust commits every second),
or is still running for the old assignment, are not worked on again: their new tickets are
``carried`` (the stage skips them); a finished one counts as done at once, a running one is
completed when its old ticket is. Only events the old assignment never admitted are new
work. A ticket is completed only once its event's output is published, so acking the
redelivery is safe.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
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
    #: the event's work was done, or is running, under a ticket of an earlier assignment
    #: (its partition was revoked and came back): not to be done again, the window
    #: completes this ticket itself
    carried: bool = False


class _Partition(Generic[E]):
    def __init__(self, generation: int, remember: int) -> None:
        self.generation = generation
        self.entries: OrderedDict[int, tuple[E, bool]] = OrderedDict()
        #: the last offsets acked: maybe not committed yet when the partition is revoked
        self.acked: deque[int] = deque(maxlen=remember)
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
        self.rewinds = 0  #: times a partition's offsets went back (see :meth:`_current`)
        #: redelivered events whose work was not done again (see the module docstring)
        self.carried_over = 0
        #: per revoked partition, offset -> (generation, finished) of what it had admitted
        self._carried: dict[Hashable, OrderedDict[int, tuple[int, bool]]] = {}
        #: (tp, generation, offset) of a revoked ticket still running -> its redelivery's
        self._successors: dict[tuple[Hashable, int, int], Ticket] = {}

    def in_flight(self, tp: Hashable | None = None) -> int:
        if tp is not None:
            part = self._parts.get(tp)
            return len(part.entries) if part else 0
        return sum(len(p.entries) for p in self._parts.values())

    def _part(self, tp: Hashable) -> _Partition[E]:
        part = self._parts.get(tp)
        if part is None:
            self._generation += 1
            part = self._parts[tp] = _Partition(self._generation, self.max_held)
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
        if ((part.entries and offset <= next(reversed(part.entries)))
                or (part.acked and offset <= part.acked[-1])):
            # The consumer went back (a reassignment this window was not told of, or a
            # seek): the events held are being redelivered, so they are forgotten, never
            # acked by us, exactly as on a revoke. Raising instead would crash the agent
            # and lose this event from the stream.
            self.rewinds += 1
            self.revoke([tp])
            part = self._part(tp)
        return part

    def _enter(self, part: _Partition[E], tp: Hashable, offset: int, item: E) -> Ticket:
        carried = self._take_carried(tp, offset)
        if carried is None:
            part.entries[offset] = (item, False)
            part.unfinished += 1
            return Ticket(tp, offset, part.generation)
        generation, finished = carried
        self.carried_over += 1
        ticket = Ticket(tp, offset, part.generation, carried=True)
        part.entries[offset] = (item, finished)
        if finished:  # its output is out: it only waits for its turn to be acked
            self._ack_head(part)
        else:
            part.unfinished += 1
            self._successors[(tp, generation, offset)] = ticket
        return ticket

    def _take_carried(self, tp: Hashable, offset: int) -> tuple[int, bool] | None:
        """What an earlier assignment of ``tp`` knew of ``offset`` (its generation, and
        whether its work finished), taken out; None when it never admitted it. Offsets
        before it are not redelivered any more: forgotten."""
        entries = self._carried.get(tp)
        if entries is None:
            return None
        while entries and next(iter(entries)) < offset:
            entries.popitem(last=False)
        known = entries.pop(offset, None)
        if not entries:
            del self._carried[tp]
        return known

    def _full(self, part: _Partition[E]) -> bool:
        return part.unfinished >= self.max_in_flight or len(part.entries) >= self.max_held

    def complete(self, ticket: Ticket) -> None:
        """Mark an event's work done; ack every completed event at the head, in order."""
        part = self._parts.get(ticket.tp)
        if part is None or part.generation != ticket.generation:
            self._complete_revoked(ticket)
            return
        entry = part.entries.get(ticket.offset)
        if entry is None or entry[1]:
            return
        part.entries[ticket.offset] = (entry[0], True)
        part.unfinished -= 1
        self._ack_head(part)

    def _complete_revoked(self, ticket: Ticket) -> None:
        """A ticket of a revoked assignment finished. If its event was redelivered here,
        that ticket is done too; if it is still to come, it will find the work done.
        Otherwise the partition's new owner gets it: never acked by us."""
        successor = self._successors.pop((ticket.tp, ticket.generation, ticket.offset), None)
        if successor is not None:
            self.complete(successor)
            return
        entries = self._carried.get(ticket.tp)
        if entries is not None and entries.get(ticket.offset, (-1, False))[0] == (
                ticket.generation):
            entries[ticket.offset] = (ticket.generation, True)

    def _ack_head(self, part: _Partition[E]) -> None:
        while part.entries:
            offset, (item, done) = next(iter(part.entries.items()))
            if not done:
                break
            del part.entries[offset]
            part.acked.append(offset)
            self._ack(item)
        if not self._full(part):
            part.space.set()

    def revoke(self, tps: Iterable[Hashable]) -> None:
        """Forget revoked partitions: their in-flight events are never acked by us (but
        remembered, in case the partition comes back: see the module docstring)."""
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is None:
                continue
            part.space.set()  # wake admitters; they re-create the partition
            if not part.entries and not part.acked:
                continue
            # acked ones too: the commit may not have reached them (then they come back)
            carried = OrderedDict((offset, (part.generation, True)) for offset in part.acked)
            carried.update((offset, (part.generation, done))
                           for offset, (_, done) in part.entries.items())
            last = next(reversed(carried))
            for offset, known in (self._carried.pop(tp, None) or {}).items():
                if offset > last:  # an older assignment's, not redelivered yet
                    carried[offset] = known
            self._carried[tp] = carried
