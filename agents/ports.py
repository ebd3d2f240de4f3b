"""The ports of the stage logic: what a handler is given and what it talks to.

A stage handler (``agents/``) sees consumed events as :class:`RawEvent`, answers with
:class:`Outcome` per event, and reaches the world only through the Protocols here: a
:class:`Publisher` (Kafka, wired by ``streams/``), a job store (``agents.jobstore``), a
:class:`VerdictWriter` (``sinks.postgres``) and a :class:`VerdictBridge`
(``sinks.rabbitmq``). :class:`Services` is the bundle one worker's handlers share, composed
by ``mailsift.compose``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agents.jobstore import JobStore
from agents.topics import TopicNames
from checks import Engine
from mailsift.settings import Settings
from schemas import JobEvent, VerdictEvent

__all__ = ["RawEvent", "Record", "Publisher", "Outcome", "Done", "BatchHandler",
           "VerdictWriter", "VerdictBridge", "BridgeRefused", "SuppressionList", "Services"]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One consumed Kafka record, as the handlers see it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def source(self) -> str:
        """``topic:partition:offset``, the event's address in the log.

        >>> RawEvent("submissions", 3, 17, None, b"{}").source
        'submissions:3:17'
        """
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce; ``partition`` None lets the key choose it."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    #: ``(verdict, reason)`` of a ``verdicts`` record, for the metrics (saves a decode)
    verdict: tuple[str, str] | None = None


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Produce one record and wait until the broker has it."""
        ...

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Produce every record (in order per partition) and wait until the broker has them
        all: one wait for the batch, not one per record."""
        ...


#: what a handler says of one event: None when it is done, else why it is malformed
Outcome = str | None
#: a handler may say early that some events of its batch (by index) are done (None)
Done = Callable[[Iterable[int]], None]


class BatchHandler(Protocol):
    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> Sequence[Outcome]:
        """Handle ``events`` (consecutive events of one stream) and say, per event, None or
        why it is malformed. Wait out transient failures, or raise them (the batch is then
        handled again). A batch's events are handed over in offset order per partition.

        ``done(indexes)`` may be called for events finished before the rest of the batch
        (their outcome is None), so they make room in the stage's window at once."""
        ...


class VerdictWriter(Protocol):
    """Where verdicts and job events are kept for queries (Postgres)."""

    async def write_verdicts(self, verdicts: Sequence[VerdictEvent]) -> None: ...

    async def write_job_event(self, event: JobEvent) -> None: ...

    async def purge_expired(self, cutoff: datetime) -> Any:
        """Remove the jobs with no activity since ``cutoff`` (the retention purge)."""
        ...


class VerdictBridge(Protocol):
    """Where verdicts are handed on to legacy consumers (RabbitMQ)."""

    async def publish(self, verdicts: Sequence[VerdictEvent]) -> None: ...


class SuppressionList(Protocol):
    """Domains and addresses never probed (``checks.suppression`` makes the keys)."""

    async def matching(self, keys: Sequence[Sequence[str]]) -> list[str | None]:
        """For each address's candidate keys, the first that is on the list, or None: one
        round trip for a whole batch."""
        ...


class BridgeRefused(RuntimeError):
    """The bridge's service refuses us for a reason an operator must fix (credentials, a
    vhost): the bridge stage holds its verdicts and says so, rather than dead-letter them."""


@dataclass
class Services:
    """What the handlers of one worker share."""

    settings: Settings
    topics: TopicNames
    engine: Engine
    jobs: JobStore
    publisher: Publisher
    redis: Any = None  # the Redis client, when there is one (readiness checks)
    sink: VerdictWriter | None = None
    bridge: VerdictBridge | None = None
    #: checked by intake before any DNS or SMTP traffic (with Redis; None: nothing is)
    suppression: SuppressionList | None = None
    #: what the stages last heard of jobs being erased (``agents.erased``): job id ->
    #: (erased?, when asked, monotonic seconds)
    erased_seen: dict[str, tuple[bool, float]] = field(default_factory=dict)
