"""The Postgres sink against the real Postgres (and the pipeline feeding it)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from agents.ports import Services
from agents.topics import TopicNames
from checks import Engine, EngineConfig
from mailsift.settings import Settings, load_settings
from mailsift.stack import stack_up
from mailsift.stack.manager import run_dir
from mailsift.stack.process import load_record, stop
from schemas import VerdictEvent
from sinks.memory_jobs import MemoryJobStore
from sinks.postgres import PostgresSink
from streams.client import read_topic, submit_job
from streams.rebuild import DatabaseNotEmpty, rebuild_from_topics
from streams.topics import bootstrap_servers
from tests.fakes import FakeEvent, FakeMessage, FakeStream
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    dedupe_key,
    pipeline_env,
    private_stack,
    running_world,
    settings_for,
    stack_env,
    wait_for_job,
)

pytestmark = pytest.mark.stack


async def create_database(base_dsn: str) -> str:
    """A fresh, empty database on the same server; returns its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base_dsn)
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


def verdict(job: str, key: str, checked_at: str, verdict: str = "deliverable",
            attempt: int = 1) -> VerdictEvent:
    return VerdictEvent(job_id=job, email=key, normalized=key, verdict=verdict, reason="ok",
                        dedupe_key=key, attempt=attempt, checked_at=checked_at,
                        evidence={"n": 1})


@pytest_asyncio.fixture
async def sink(stack: Settings) -> AsyncIterator[PostgresSink]:
    s = PostgresSink(await create_database(stack.database_url))
    yield s
    await s.close()


@pytest.mark.asyncio
async def test_migrations_apply_once(sink: PostgresSink) -> None:
    assert await sink.migrate() == [1, 2, 3, 4]
    assert await sink.migrate() == []
    pool = await sink.pool()
    assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 4
    assert await pool.fetchval(  # 4: an upload's rows, kept for its results
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'job_inputs'") == 4
    assert await pool.fetchval(  # 2: the verdict score
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'verdicts' AND column_name = 'score'") == "smallint"


@pytest.mark.asyncio
async def test_redelivered_verdicts_make_one_row_and_newer_wins(sink: PostgresSink) -> None:
    old = verdict("j1", "a@x.test", "2026-11-25T10:00:00Z", "unknown")
    new = verdict("j1", "a@x.test", "2026-11-25T10:05:00Z", "deliverable", attempt=2)
    await sink.write_verdicts([old, old])        # the same event twice in one batch
    await sink.write_verdicts([new])
    await sink.write_verdicts([old])             # a late redelivery of the older one
    await sink.write_verdicts([verdict("j1", "b@x.test", "2026-11-25T10:00:00Z")])
    pool = await sink.pool()
    rows = await pool.fetch("SELECT address_key, verdict, attempt FROM verdicts "
                            "WHERE job_id = 'j1' ORDER BY address_key")
    assert [tuple(r) for r in rows] == [("a@x.test", "deliverable", 2),
                                        ("b@x.test", "deliverable", 1)]
    summary = await sink.job_summary("j1")
    assert summary["stored"] == 2 and summary["by_verdict"] == {"deliverable": 2}


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    with running_world("--no-default", "--bulk", "20", "--bulk-mailboxes", "9") as w:
        yield w


EMAILS = [f"user{j}@bulk{i}.test" for i in range(20) for j in range(10)]


def test_pipeline_fills_postgres_exactly_once_and_rebuilds(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    dsn = asyncio.run(create_database(stack.database_url))
    env = pipeline_env(world, MAILSIFT_DATABASE_URL=dsn, MAILSIFT_AMQP_URL="",
                       MAILSIFT_MX_MAX_RCPT_PER_SECOND="200")
    settings = settings_for(env)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        async def run() -> None:
            job = await submit_job(settings, EMAILS + EMAILS[:5])  # 5 duplicates
            await wait_for_job(settings, job, {dedupe_key(e) for e in EMAILS}, timeout=120)
            sink = PostgresSink(dsn)
            try:
                await _eventually_rows(sink, job, len(EMAILS))
                # deliver every verdict event a second time: still one row per address
                names = TopicNames.from_settings(settings)
                events = await read_topic(settings, names.verdicts)
                producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings))
                await producer.start()
                try:
                    for _, _, key, value in events:
                        await producer.send_and_wait(names.verdicts, value, key=key)
                finally:
                    await producer.stop()
                await asyncio.sleep(3)
                summary = await _eventually_rows(sink, job, len(EMAILS))
                assert summary["by_verdict"] == {"deliverable": 180, "undeliverable": 20}
                assert summary["total"] == len(EMAILS) + 5
                assert summary["completed_at"] is not None
            finally:
                await sink.close()

            # rebuild the same content into an empty database from the topics
            fresh = await create_database(stack.database_url)
            rebuilt_settings = settings_for({**env, "MAILSIFT_DATABASE_URL": fresh})
            verdicts, jobs = await rebuild_from_topics(rebuilt_settings)
            assert verdicts == 2 * len(EMAILS) and jobs >= 2
            other = PostgresSink(fresh)
            try:
                assert (await other.job_summary(job))["by_verdict"] == {
                    "deliverable": 180, "undeliverable": 20}
            finally:
                await other.close()
            with pytest.raises(DatabaseNotEmpty):
                await rebuild_from_topics(rebuilt_settings)

        asyncio.run(run())
        assert worker.alive()
    finally:
        worker.stop()


async def _eventually_rows(sink: PostgresSink, job: str, n: int, timeout: float = 60
                           ) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        summary = await sink.job_summary(job)
        if summary["stored"] == n or asyncio.get_running_loop().time() > deadline:
            assert summary["stored"] == n, summary
            return summary
        await asyncio.sleep(0.5)


@pytest.fixture
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A stack of our own, so stopping its Postgres disturbs nobody else."""
    with private_stack(tmp_path_factory.mktemp("stack"), 25110, amqp=False) as settings:
        yield settings


def test_postgres_down_for_20s_during_a_job_loses_nothing(
        own_stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    s = own_stack
    env = pipeline_env(world, **stack_env(s), MAILSIFT_MX_MAX_RCPT_PER_SECOND="40")
    settings = settings_for(env)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    rdir = run_dir(s)
    stopped: list[bool] = []

    async def stop_postgres_midway(seen: int) -> None:
        if not stopped and seen >= 20:
            record = load_record(rdir, "postgres")
            assert record is not None
            stop(record, rdir, sig=signal.SIGINT)
            stopped.append(True)

    try:
        async def run() -> None:
            job = await submit_job(settings, EMAILS)
            await wait_for_job(settings, job, {dedupe_key(e) for e in EMAILS}, timeout=120,
                               on_verdict=stop_postgres_midway)
            assert stopped, "Postgres was never stopped mid-job"
            await asyncio.sleep(20)
            assert worker.alive()
            await asyncio.to_thread(stack_up, s)  # starts only what is missing: Postgres
            sink = PostgresSink(s.database_url)
            try:
                summary = await _eventually_rows(sink, job, len(EMAILS), timeout=90)
                assert summary["by_verdict"] == {"deliverable": 180, "undeliverable": 20}
            finally:
                await sink.close()

        asyncio.run(run())
        assert worker.alive()
        assert "Traceback" not in worker.log_text()
    finally:
        worker.stop()


def test_one_unwritable_verdict_does_not_sink_its_batch() -> None:
    """A verdict Postgres refuses is dead-lettered alone; the rest of its batch is written."""
    from agents.ports import Record
    from agents.sinks import PostgresSinkHandler
    from streams.stage import run_stage

    written: list[str] = []
    settings = load_settings({"MAILSIFT_TOPIC_PREFIX": "m."}, dotenv=False)
    topics = TopicNames.from_settings(settings)

    class Sink:
        async def write_verdicts(self, batch: list[VerdictEvent]) -> None:
            if any(v.dedupe_key == "bad" for v in batch):
                raise ValueError("invalid byte sequence")  # a non-transient error
            written.extend(v.dedupe_key for v in batch)

    class Publisher:
        def __init__(self) -> None:
            self.sent: list[Record] = []

        async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
            self.sent.append(Record(topic, key, value))

        async def publish_many(self, records: Sequence[Record]) -> None:
            self.sent += records

    async def run() -> tuple[list[int], Publisher]:
        acked: list[int] = []
        values = [verdict("j", k, "2026-11-25T10:00:00Z").dumps() for k in ("a", "bad", "c")]
        pub = Publisher()
        services = Services(settings, topics, Engine(EngineConfig()), MemoryJobStore(), pub)
        handler = PostgresSinkHandler(services, Sink())
        events = [FakeEvent(FakeMessage(i, v, topic=topics.verdicts), acked)
                  for i, v in enumerate(values)]
        await run_stage(FakeStream(events), handler,
                        publisher=pub, dead_letter_topic=topics.dead_letters,
                        max_in_flight=10, name="sink-postgres")
        for _ in range(200):
            if len(acked) == 3:
                break
            await asyncio.sleep(0.01)
        return acked, pub

    acked, pub = asyncio.run(run())
    assert acked == [0, 1, 2]  # the bad one too: it went to the dead letters
    assert written == ["a", "c"]
    letters = [r for r in pub.sent if r.topic == topics.dead_letters]
    assert len(letters) == 1 and b"invalid byte sequence" in letters[0].value
    assert json.loads(letters[0].value)["offset"] == 1
