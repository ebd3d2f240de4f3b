"""Intake without Kafka: dedupe keeps the first submission even when work interleaves."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence

import pytest

from agents.intake import IntakeHandler
from agents.jobstore import JobProgress
from agents.ports import RawEvent, Record, Services
from agents.topics import TopicNames
from checks import Engine, EngineConfig
from mailsift.settings import load_settings
from sinks.memory_jobs import MemoryJobStore

pytestmark = pytest.mark.asyncio


class SlowStore(MemoryJobStore):
    """Claims that take a random while, as Redis round trips on many connections do."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    async def claim_many(self, key: str, claims: Sequence[tuple[str, str]]) -> list[bool]:
        # on a pool of connections, commands sent in order can reach Redis in any order
        await asyncio.sleep(self.rng.uniform(0, 0.02))
        return await super().claim_many(key, claims)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, json.loads(value)))

    async def publish_many(self, records: Sequence[Record]) -> None:
        for r in records:
            await self.publish(r.topic, r.key, r.value)


@pytest.mark.parametrize("seed", range(5))
async def test_first_spelling_of_a_repeated_address_wins(seed: int) -> None:
    settings = load_settings({"MAILSIFT_ALLOW_TEST_TLD": "true"}, dotenv=False)
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    services = Services(settings, names, Engine(EngineConfig(allow_test_tld=True)),
                        SlowStore(seed), recorder)
    handler = IntakeHandler(services)
    emails = ["alice@ok.test", "Alice@OK.test", "bob@ok.test", "ALICE@ok.test", "x"]
    values = [json.dumps({"job_id": "j", "email": e}).encode() for e in emails]
    events = [RawEvent(names.submissions, 0, offset, b"j", v) for offset, v in enumerate(values)]
    # batches of one partition run concurrently, as the stage runs them
    await asyncio.gather(*(handler(events[i:i + 2]) for i in range(0, len(events), 2)))
    forwarded = [str(m["email"]) for t, m in recorder.sent if t == names.by_domain]
    duplicates = [str(m["source"]) for t, m in recorder.sent if t == names.jobs]
    verdicts = [m["email"] for t, m in recorder.sent if t == names.verdicts]
    assert sorted(forwarded) == ["alice@ok.test", "bob@ok.test"]
    assert sorted(duplicates) == [f"{names.submissions}:0:1", f"{names.submissions}:0:3"]
    assert verdicts == ["x"]  # a non-address gets its syntax verdict at once


async def test_the_task_carries_the_parse_the_domain_stage_would_make() -> None:
    """Intake's parse travels with each task: rebuilt from it, it equals what parsing the
    address again gives (the domain stage skips the syntax check), whatever the spelling."""
    from checks.model import ParsedAddress
    from schemas import AddressTask

    settings = load_settings({"MAILSIFT_ALLOW_TEST_TLD": "true"}, dotenv=False)
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    engine = Engine(EngineConfig(allow_test_tld=True))
    handler = IntakeHandler(Services(settings, names, engine, MemoryJobStore(), recorder))
    emails = ["Ann <Ann.Lee@Bücher.test>", '"a b"@ok.test', "josé@exämple.test",
              "UPPER@OK.TEST"]
    values = [json.dumps({"job_id": "j", "email": e}).encode() for e in emails]
    await handler([RawEvent(names.submissions, 0, i, b"j", v) for i, v in enumerate(values)])
    tasks = [AddressTask.decode(json.dumps(m).encode())
             for t, m in recorder.sent if t == names.by_domain]
    assert len(tasks) == len(emails) and all(t.address for t in tasks)
    for task in tasks:
        rebuilt = ParsedAddress.from_parts(task.email, task.domain, task.dedupe_key,
                                           task.address)
        assert rebuilt is not None and rebuilt == engine._parse_uncached(task.email)


class ListedOnly:
    """A suppression list in memory (the Redis one is tested on Redis)."""

    def __init__(self, *entries: str) -> None:
        from checks.suppression import entry_key

        self.listed = {entry_key(e) for e in entries}
        self.calls = 0

    async def matching(self, keys: Sequence[Sequence[str]]) -> list[str | None]:
        self.calls += 1
        return [next((k for k in group if k in self.listed), None) for group in keys]


async def test_a_suppressed_address_gets_its_verdict_at_intake_and_no_task() -> None:
    """A domain on the list suppresses it and every name under it; an address on it, that
    mailbox in any spelling. One lookup for the batch; duplicates still count as such."""
    settings = load_settings({"MAILSIFT_ALLOW_TEST_TLD": "true"}, dotenv=False)
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    listed = ListedOnly("ok.test", "Bob@Catchall.TEST")
    services = Services(settings, names, Engine(EngineConfig(allow_test_tld=True)),
                        MemoryJobStore(), recorder, suppression=listed)
    emails = ["alice@ok.test", "x@news.ok.test", "bob@catchall.test", "carol@catchall.test",
              "alice@notok.test", "ALICE@ok.test", "not an address"]
    values = [json.dumps({"job_id": "j", "email": e}).encode() for e in emails]
    events = [RawEvent(names.submissions, 0, offset, b"j", v) for offset, v in enumerate(values)]
    assert await IntakeHandler(services)(events) == [None] * len(events)
    assert listed.calls == 1
    forwarded = sorted(str(m["email"]) for t, m in recorder.sent if t == names.by_domain)
    assert forwarded == ["alice@notok.test", "carol@catchall.test"]
    verdicts = {str(m["email"]): m for t, m in recorder.sent if t == names.verdicts}
    for email, entry in [("alice@ok.test", "domain:ok.test"),
                         ("x@news.ok.test", "domain:ok.test"),
                         ("bob@catchall.test", "address:bob@catchall.test")]:
        v = verdicts[email]
        assert (v["verdict"], v["reason"]) == ("unknown", "suppressed")
        assert entry in str(v["evidence"]["error"])  # type: ignore[index]
    assert verdicts["not an address"]["reason"] == "syntax"
    assert [m["kind"] for t, m in recorder.sent if t == names.jobs] == ["duplicate"]


async def test_intake_drops_the_submissions_of_an_erased_job() -> None:
    """#12: a submission of an erased job is acknowledged and goes nowhere (no claim, no
    task, no verdict); the other jobs' go on as ever."""
    settings = load_settings({"MAILSIFT_ALLOW_TEST_TLD": "true"}, dotenv=False)
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    store = MemoryJobStore()
    await store.erase("gone")
    handler = IntakeHandler(Services(settings, names, Engine(EngineConfig(allow_test_tld=True)),
                                     store, recorder))
    values = [json.dumps({"job_id": job, "email": email}).encode()
              for job, email in (("gone", "alice@ok.test"), ("kept", "bob@ok.test"),
                                 ("gone", "not an address"))]
    outcomes = await handler([RawEvent(names.submissions, 0, i, b"k", v)
                              for i, v in enumerate(values)])
    assert outcomes == [None, None, None]
    assert [(t, m["job_id"], m["email"]) for t, m in recorder.sent] == [
        (names.by_domain, "kept", "bob@ok.test")]
    assert await store.progress("gone") == await MemoryJobStore().progress("gone")


async def test_the_progress_stage_erases_a_job_on_its_deleted_event() -> None:
    """#12: the `deleted` event erases the job's bookkeeping where the eraser could not
    (Redis away then), and its verdicts are not counted from then on."""
    from agents.progress import ProgressHandler
    from schemas import JobEvent

    settings = load_settings({}, dotenv=False)
    names = TopicNames.from_settings(settings)
    store = MemoryJobStore()
    await store.set_total("j", 3)
    handler = ProgressHandler(Services(settings, names, Engine(EngineConfig()), store,
                                       Recorder()))
    deleted = JobEvent.create("j", "deleted").dumps()
    verdict = json.dumps({"job_id": "j", "email": "a@x.test", "normalized": "a@x.test",
                          "verdict": "deliverable", "reason": "ok", "dedupe_key": "a@x.test",
                          "attempt": 1, "checked_at": "2026-12-03T00:00:00Z",
                          "evidence": {}}).encode()
    assert await handler([RawEvent(names.jobs, 0, 0, b"j", deleted),
                          RawEvent(names.verdicts, 0, 0, b"j", verdict)]) == [None, None]
    assert await store.erased(["j", "other"]) == {"j"}
    progress = await store.progress("j")
    assert (progress.total, progress.final) == (None, 0)


async def test_the_progress_stage_counts_a_batch_of_duplicates_in_one_round_trip() -> None:
    """A list with many repeats sends a `duplicate` event per repeat: the progress stage
    counts a batch's duplicates of a job in one store call (it was two per event), and the
    job completes with the batch that accounts for its last submission."""
    from agents.progress import ProgressHandler
    from schemas import JobEvent

    class CountingStore(MemoryJobStore):
        calls = 0

        async def record_duplicates(self, key: str, sources: Sequence[str]) -> JobProgress:
            self.calls += 1
            return await super().record_duplicates(key, sources)

    settings = load_settings({}, dotenv=False)
    names = TopicNames.from_settings(settings)
    store = CountingStore()
    recorder = Recorder()
    handler = ProgressHandler(Services(settings, names, Engine(EngineConfig()), store,
                                       recorder))
    verdict = json.dumps({"job_id": "j", "email": "a@x.test", "normalized": "a@x.test",
                          "verdict": "deliverable", "reason": "ok", "dedupe_key": "a@x.test",
                          "attempt": 1, "checked_at": "2026-12-03T00:00:00Z",
                          "source": "s:0:0", "evidence": {}}).encode()
    events = [RawEvent(names.verdicts, 0, 0, b"j", verdict),
              RawEvent(names.jobs, 0, 0, b"j", JobEvent.create("j", "created", total=301).dumps())]
    events += [RawEvent(names.jobs, 0, i, b"j",
                        JobEvent.create("j", "duplicate", source=f"s:0:{i}").dumps())
               for i in range(1, 300)]
    assert await handler(events) == [None] * len(events)
    assert store.calls == 1
    progress = await store.progress("j")
    assert (progress.total, progress.final, progress.duplicates) == (301, 1, 299)
    assert not progress.completed  # one submission is still out
    last = JobEvent.create("j", "duplicate", source="s:0:300").dumps()
    assert await handler([RawEvent(names.jobs, 0, 300, b"j", last)]) == [None]
    completed = [m for t, m in recorder.sent if t == names.jobs and m["kind"] == "completed"]
    assert len(completed) == 1 and completed[0]["total"] == 301
    assert (await store.progress("j")).completed
