"""Talk to the pipeline from outside a worker: submit jobs, follow verdicts and job events.

This is what ``mailsift submit``/``validate`` and the tests use; upstream systems can do the
same with any Kafka client (see the README for the JSON they produce).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.jobstore import JobProgress
from agents.outage import retry_transient
from agents.topics import TopicNames
from checks.syntax import input_key, parse_address
from mailsift.settings import Settings
from schemas import JobEvent, SchemaError, Submission, VerdictEvent, submission_key
from schemas.submission import submittable_email
from streams.topics import bootstrap_servers, ensure_topics

T = TypeVar("T")

__all__ = ["scan_records", "new_job_id", "submit_job", "submit_emails", "follow", "Followed",
           "read_topic", "job_progress", "job_verdicts", "kafka_calls", "dedupe_key",
           "publish_job_event", "erased_jobs", "JobErased"]


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    # stopped before its internal tasks ran, aiokafka's consumer raises CancelledError
    # from stop() (NoGroupCoordinator.close): let them start first
    await asyncio.sleep(0)
    await consumer.stop()


@contextlib.contextmanager
def kafka_calls(settings: Settings) -> Iterator[None]:
    """Turn "the broker is not there" into :class:`~streams.worker.KafkaUnavailable`."""
    from aiokafka.errors import KafkaError

    # streams.worker imports this module: a top-level import would be a cycle
    from streams.worker import KafkaUnavailable

    try:
        yield
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka_broker} ({type(exc).__name__}); "
            "start the local stack with `mailsift stack up` or set MAILSIFT_KAFKA_BROKER"
        ) from None


def dedupe_key(email: str, *, allow_test_tld: bool = True) -> str:
    r"""The identity intake gives the input ``email`` (:func:`checks.syntax.input_key` of
    what its submission carries): the address's dedupe key, or ``raw:`` and the input as
    typed when it is not an address (the Kafka key of its submission, and how
    ``mailsift validate`` finds each row's verdict).

    >>> dedupe_key("Ann@Bücher.de"), dedupe_key(" not an address "), dedupe_key("a\x00b")
    ('ann@xn--bcher-kva.de', 'raw:not an address', 'raw:a\ufffdb')
    """
    return input_key(parse_address(submittable_email(email), allow_test_tld=allow_test_tld))


def new_job_id() -> str:
    """A fresh random job id.

    >>> len(new_job_id())
    32
    """
    return uuid.uuid4().hex


async def submit_job(settings: Settings, emails: Iterable[str], *, job_id: str | None = None,
                     request_ids: Sequence[str] | None = None,
                     metadata: dict[str, Any] | None = None, owner: str | None = None,
                     wait_for_budget: bool = True) -> str:
    """Produce one submission per address, then the job's ``created`` event; return the id."""
    job, _ = await submit_emails(settings, emails, job_id=job_id, request_ids=request_ids,
                                 metadata=metadata, owner=owner,
                                 wait_for_budget=wait_for_budget)
    return job


async def submit_emails(settings: Settings, emails: Iterable[str], *,
                        job_id: str | None = None,
                        request_ids: Sequence[str] | None = None,
                        metadata: dict[str, Any] | None = None,
                        owner: str | None = None,
                        wait_for_budget: bool = True,
                        on_progress: Callable[[int], Awaitable[Any]] | None = None
                        ) -> tuple[str, int]:
    """:func:`submit_job` for ``emails`` of any length, read as they are produced (at
    most 10,000 unacknowledged at a time); returns the job id and how many there were.
    ``owner`` (an API token's fingerprint) goes in the ``created`` event. Without
    ``wait_for_budget``, an address past its daily probe budget ends ``unknown`` at once.
    ``on_progress`` is given the count the broker has, after each 10,000."""
    job_id = job_id or new_job_id()
    names, producer = await _producer(settings)
    total = 0
    try:
        key = job_id.encode()
        futures = []
        for i, email in enumerate(emails):
            sub = Submission.create(job_id, email, metadata=metadata,
                                    request_id=request_ids[i] if request_ids else None,
                                    wait_for_budget=wait_for_budget)
            futures.append(await producer.send(names.submissions, sub.dumps(),
                                               key=submission_key(job_id, dedupe_key(email))))
            total += 1
            if len(futures) >= 10_000:
                await asyncio.gather(*futures)
                futures = []
                if on_progress is not None:
                    await on_progress(total)
        await asyncio.gather(*futures)
        created = JobEvent.create(job_id, "created", total=total, owner=owner)
        await producer.send_and_wait(names.jobs, created.dumps(), key=key)
    finally:
        await producer.stop()
    return job_id, total


async def publish_job_event(settings: Settings, event: JobEvent) -> None:
    """Produce one job event (keyed by its job) and wait until the broker has it."""
    names, producer = await _producer(settings)
    try:
        await producer.send_and_wait(names.jobs, event.dumps(), key=event.job_id.encode())
    finally:
        await producer.stop()


async def _producer(settings: Settings) -> tuple[TopicNames, AIOKafkaProducer]:
    """The topics and a started producer, waiting up to ``MAILSIFT_KAFKA_WAIT`` for a broker
    that does not answer. Only this part is retried: nothing has been produced yet. (Once
    sending, the producer itself waits out a pause up to its delivery timeout.)"""

    async def attempt() -> tuple[TopicNames, AIOKafkaProducer]:
        names = await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings), acks="all",
                                    linger_ms=5, max_batch_size=256 * 1024)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # also cleans up a failed start
            raise
        return names, producer

    result: tuple[TopicNames, AIOKafkaProducer] = await retry_transient(
        f"Kafka at {settings.kafka_broker}", attempt, first_delay=0.5, max_delay=5.0,
        give_up_after=settings.kafka_wait)
    return result


@dataclass(frozen=True)
class Followed:
    """One event seen while following: a verdict or a job event (the other is None)."""

    verdict: VerdictEvent | None
    job: JobEvent | None


async def follow(settings: Settings, job_id: str | None = None, *,
                 from_beginning: bool = True) -> AsyncGenerator[Followed, None]:
    """Yield verdicts and job events (of ``job_id`` only, when given) as they arrive.

    Reads without a consumer group (it never disturbs the workers' offsets).
    """
    names = TopicNames.from_settings(settings)
    consumer = AIOKafkaConsumer(
        names.verdicts, names.jobs, bootstrap_servers=bootstrap_servers(settings),
        group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    try:
        await consumer.start()  # stop() below also cleans up a failed start
        async for msg in consumer:
            try:
                if msg.topic == names.verdicts:
                    verdict = VerdictEvent.decode(msg.value)
                    if job_id is None or verdict.job_id == job_id:
                        yield Followed(verdict, None)
                else:
                    event = JobEvent.decode(msg.value)
                    if job_id is None or event.job_id == job_id:
                        yield Followed(None, event)
            except SchemaError:
                continue  # not ours to judge here; the workers dead-letter bad events
    finally:
        await stop_consumer(consumer)


async def scan_records(settings: Settings, topic: str, decode: Callable[[bytes | None], T],
                       *, until_ms: int | None = None) -> AsyncIterator[T]:
    """The records of ``topic`` from the beginning (see :func:`scan_topic`), decoded;
    malformed ones (:class:`~schemas.SchemaError`) are skipped: they are dead letters."""
    async for msg in scan_topic(settings, topic, until_ms=until_ms):
        try:
            yield decode(msg.value)
        except SchemaError:
            continue


async def scan_topic(settings: Settings, topic: str, *, idle: float = 1.5,
                     timeout: float = 600.0, until_ms: int | None = None
                     ) -> AsyncIterator[Any]:
    """Every record of ``topic`` from the beginning, until none arrives for ``idle`` seconds.

    The end is found by reading, not by asking the broker for end offsets: Tansu reports
    end offsets per produced batch, not per record, so they cannot be trusted. With
    ``until_ms``, a partition is done at its first record stamped later than that (epoch
    ms), so a topic that is still being written to ends too.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=200)
    try:
        await consumer.start()  # stop() below also cleans up a failed start
        tps = await assign_from_start(consumer, topic)
        async for msg in until_idle(consumer, tps, idle=idle, timeout=timeout,
                                    until_ms=until_ms):
            yield msg
    finally:
        await stop_consumer(consumer)


async def assign_from_start(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of ``topic`` (none yet: an empty list) to ``consumer``,
    positioned at the beginning."""
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if tps:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    return tps


async def until_idle(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], *,
                     idle: float = 1.5, timeout: float | None = None,
                     until_ms: int | None = None) -> AsyncIterator[Any]:
    """The records ``consumer`` reads from ``tps`` until none arrives for ``idle`` seconds
    (or ``timeout`` passed). The one topic-scan loop: :func:`scan_topic` and the API's
    dead-letter count read through it. With ``until_ms``, a partition is done at its first
    record stamped later than that (epoch ms)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    quiet_since = loop.time()
    open_tps = set(tps)
    while (open_tps and loop.time() - quiet_since < idle
           and (deadline is None or loop.time() < deadline)):
        batch = await consumer.getmany(*open_tps, timeout_ms=int(idle * 1000 / 3))
        handed_out = False
        for tp, messages in batch.items():
            for msg in messages:
                if until_ms is not None and msg.timestamp > until_ms:
                    open_tps.discard(tp)
                    consumer.pause(tp)
                    break
                handed_out = True
                yield msg
        if handed_out:
            # the idle clock starts when the caller is done with the batch: time it spent
            # on the records is not time the topic was quiet
            quiet_since = loop.time()


async def read_topic(settings: Settings, topic: str, *, idle: float = 1.5
                     ) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Everything in ``topic`` now: (partition, offset, key, value), for inspection."""
    return [(m.partition, m.offset, m.key, m.value)
            async for m in scan_topic(settings, topic, idle=idle)]


async def job_progress(settings: Settings, job_id: str,
                       replay_id: str | None = None) -> JobProgress:
    """The job run's progress as the workers recorded it (needs Redis)."""
    # aiokafka is slow to import: only what may rebuild from the topics loads it
    # the services' clients are slow to import: only what uses them loads them
    from agents.jobstore import job_key
    from sinks.redis_client import redis_client
    from sinks.redis_jobs import RedisJobStore
    from streams.job_rebuild import rebuilder

    client = redis_client(settings.redis_url)
    try:
        store = RedisJobStore(client, prefix=settings.redis_prefix,
                              rebuild=rebuilder(settings),
                              ttl_seconds=settings.job_ttl_seconds())
        return await store.progress(job_key(job_id, replay_id))
    finally:
        await client.aclose()


class JobErased(LookupError):
    """The job asked for was erased (``mailsift jobs delete``); the message says so."""


async def erased_jobs(settings: Settings) -> set[str]:
    """The ids of the jobs erased on request: their ``deleted`` events in ``jobs``."""
    names = TopicNames.from_settings(settings)
    return {event.job_id async for event in scan_records(settings, names.jobs, JobEvent.decode)
            if event.kind == "deleted"}


async def job_verdicts(settings: Settings, job_id: str, replay_id: str | None = None
                       ) -> dict[str, VerdictEvent]:
    """The latest verdict per address of a job run, read from the ``verdicts`` topic;
    :class:`JobErased` for an erased job (its verdicts are still in the topic until the
    retention removes them, but they are not read)."""
    names = TopicNames.from_settings(settings)
    out: dict[str, VerdictEvent] = {}
    erased, records = await asyncio.gather(erased_jobs(settings),
                                           read_topic(settings, names.verdicts))
    if job_id in erased:
        raise JobErased(f"job {job_id} was erased (mailsift jobs delete)")
    for _, _, _, value in records:
        try:
            verdict = VerdictEvent.decode(value)
        except SchemaError:
            continue
        if verdict.job_id != job_id or verdict.replay_id != replay_id:
            continue
        known = out.get(verdict.dedupe_key)
        if known is None or (verdict.attempt, verdict.checked_at) >= (known.attempt,
                                                                      known.checked_at):
            out[verdict.dedupe_key] = verdict
    return out
