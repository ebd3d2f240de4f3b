"""The Faust pipeline on the real broker (Tansu), Redis, and a simulated world process.

Each test runs a private pipeline (own topic prefix and consumer group) with real
``mailsift worker`` processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailsift.settings import Settings
from schemas import DeadLetter
from streams.client import job_verdicts, read_topic, submit_job
from streams.topics import ensure_topics
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    dedupe_key,
    full_addresses_in,
    pipeline_env,
    produce_raw,
    run_cli,
    running_world,
    settings_for,
    wait_for_job,
)

pytestmark = pytest.mark.stack

MIXED = {
    # address: (verdict, reason, attempt of the final verdict)
    "alice@ok.test": ("deliverable", "ok", 1),
    "bob@ok.test": ("deliverable", "ok", 1),
    "nobody@ok.test": ("undeliverable", "mailbox_not_found", 1),
    "disabled@ok.test": ("undeliverable", "mailbox_disabled", 1),
    "full@ok.test": ("risky", "mailbox_full", 1),
    "anyone@catchall.test": ("risky", "catch_all", 1),
    "carol@greylist.test": ("deliverable", "ok", 2),  # greylisted once, then accepted
    "alice@refused.test": ("unknown", "connection_failed", 3),  # after every retry
    "alice@blocked.test": ("unknown", "blocked", 1),
    "a@nullmx.test": ("undeliverable", "null_mx", 1),
    "a@nxdomain.test": ("undeliverable", "no_domain", 1),
    "not an address": ("undeliverable", "syntax", 1),
}
DUPLICATES = ["Alice@OK.test", "alice@ok.test", "not an address"]


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    with running_world("--greylist-seconds", "1") as w:
        yield w


def test_mixed_job_gets_one_final_verdict_per_address(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    env = pipeline_env(world)
    settings = settings_for(env)
    legacy = LegacyConsumer(settings.amqp_url, "verdict.#")  # bound before the job runs
    # INFO, in JSON: everything a production worker would log (#12: no full address)
    worker = WorkerProcess({**env, "MAILSIFT_LOG_FORMAT": "json"}, tmp_path / "worker.log",
                           loglevel="info")
    try:
        emails = list(MIXED) + DUPLICATES

        async def run() -> str:
            job = await submit_job(settings, emails)
            outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in MIXED},
                                         timeout=120)
            final = outcome.final_by_key()
            got = {v.email: (v.verdict, v.reason, v.attempt) for v in final.values()}
            assert got == MIXED
            # exactly one final verdict per unique address, none for the duplicates
            assert len(outcome.verdicts) == len(MIXED)
            completed = outcome.completed()
            assert completed is not None and completed.total == len(emails)
            assert completed.counts == {"deliverable": 3, "undeliverable": 5, "risky": 2,
                                        "unknown": 2}
            dups = [e for e in outcome.events if e.kind == "duplicate"]
            assert len(dups) == len(DUPLICATES)
            evidence = final[dedupe_key("alice@ok.test")].evidence
            assert evidence["spf"]["all_qualifier"] == "-"
            assert evidence["smtp"]["reply"]["code"] == 250
            # the score travels with every verdict, and Postgres keeps it
            scores = {v.email: v.score for v in final.values()}
            assert scores["alice@ok.test"] == 100  # accepted, SPF and DMARC present
            assert all(scores[e] == 0 for e, (v, _, _) in MIXED.items()
                       if v == "undeliverable")
            assert all(s is not None and 0 <= s <= 100 for s in scores.values())
            await wait_stored_scores(settings, job, scores)
            # every attempt is in the evidence once there was more than one
            grey = final[dedupe_key("carol@greylist.test")].evidence
            assert [(a["attempt"], a["reason"]) for a in grey["attempts"]] == [
                (1, "greylisted"), (2, "ok")]
            assert grey["attempts"][0]["smtp_code"] == 451 and grey["greylisted"] is True
            refused = final[dedupe_key("alice@refused.test")].evidence
            assert [a["reason"] for a in refused["attempts"]] == ["connection_failed"] * 3
            assert refused["greylisted"] is False
            assert "attempts" not in evidence  # alice@ok.test: one attempt
            return job

        job = asyncio.run(run())
        assert worker.alive()
        # the legacy RabbitMQ consumer got one message per verdict, routed by verdict.reason
        messages = legacy.drain(job, expected=len(MIXED))
        assert sorted(m["routing_key"] for m in messages) == sorted(
            f"verdict.{v}.{r}" for v, r, _ in MIXED.values())
        assert all(m["persistent"] for m in messages)
        assert all(isinstance(m["body"]["score"], int) for m in messages)
    finally:
        worker.stop()
        legacy.close()
    # every log record is one JSON object (what else is on stderr, a Python warning, is not
    # a log record)
    lines = [json.loads(line) for line in worker.log_text().splitlines()
             if line.startswith("{")]
    assert lines and all({"level", "message", "stage", "worker"} <= set(e) for e in lines)
    assert not full_addresses_in(worker.log_text(), emails)


async def wait_stored_scores(settings: Settings, job: str, scores: dict[str, int | None]
                             ) -> None:
    """Postgres holds every verdict of ``job`` with the score its event carried."""
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = await conn.fetch("SELECT email, score FROM verdicts WHERE job_id = $1", job)
            if {r["email"]: r["score"] for r in rows} == scores:
                return
            assert time.monotonic() < deadline, (rows, scores)
            await asyncio.sleep(0.3)
    finally:
        await conn.close()


class LegacyConsumer:
    """A legacy system's queue bound to the verdicts exchange (pika, as they would)."""

    def __init__(self, url: str, binding: str) -> None:
        import pika

        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.conn.channel()
        self.channel.exchange_declare("mailsift.verdicts", exchange_type="topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, "mailsift.verdicts", routing_key=binding)

    def drain(self, job: str, *, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                if len(out) >= expected:
                    self.conn.sleep(1.0)  # anything more would be a duplicate: wait for it
                    method, props, body = self.channel.basic_get(self.queue, auto_ack=True)
                    if method is None:
                        return out
                else:
                    self.conn.sleep(0.2)
                    continue
            if (props.headers or {}).get("job_id") == job:
                out.append({"routing_key": method.routing_key, "body": json.loads(body),
                            "persistent": props.delivery_mode == 2})
        return out

    def close(self) -> None:
        self.conn.close()


#: events no job waits for: dead letters
BAD_EVENTS = [
    (b"this is not json", "not JSON"),
    (b'{"job_id": 5, "email": "a@ok.test"}', "must be a string"),
    (b'{"email": "a@ok.test"}', "missing field 'job_id'"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b"\xff\xfe\x00garbage", "not JSON"),
]
#: submissions of job ``j-bad`` that break the schema or hold no address: each one still
#: gets a final undeliverable/syntax verdict, so the job completes
SALVAGED = [
    (b'{"job_id": "j-bad"}', "missing field 'email'"),
    (b'{"job_id": "j-bad", "email": "' + b"x" * 70000 + b'"}', "exceeds"),
    (b'{"job_id": "j-bad", "email": {"not": "text"}, "metadata": 7}', "must be a string"),
    (b'{"job_id": "j-bad", "email": "a\\u0000@ok.test"}', "invalid characters"),
    (b'{"job_id": "j-bad", "email": "  "}', "empty"),
]


def test_malformed_events_go_to_dead_letters_and_worker_goes_on(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    from schemas import JobEvent

    env = pipeline_env(world)
    settings = settings_for(env)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        async def run() -> None:
            names = await ensure_topics(settings)
            await produce_raw(settings, names.submissions,
                              [(b"j-bad", raw) for raw, _ in BAD_EVENTS + SALVAGED])
            created = JobEvent.create("j-bad", "created", total=len(SALVAGED))
            await produce_raw(settings, names.jobs, [(b"j-bad", created.dumps())])
            await produce_raw(settings, names.by_domain, [(b"ok.test", b'{"nonsense": true}')])
            # a good job after the bad events still completes: the worker kept going
            job = await submit_job(settings, ["alice@ok.test"])
            await wait_for_job(settings, job, {dedupe_key("alice@ok.test")}, timeout=90)
            # and so does the job whose submissions were broken: one verdict each
            bad = await wait_for_job(settings, "j-bad", (), timeout=60)
            completed = bad.completed()
            assert completed is not None and completed.counts == {
                "undeliverable": len(SALVAGED)}, completed
            finals = await job_verdicts(settings, "j-bad")  # all in the topic by now
            assert len(finals) == len(SALVAGED)
            assert {(v.verdict, v.reason) for v in finals.values()} == {
                ("undeliverable", "syntax")}
            errors = sorted(str(v.evidence.get("error")) for v in finals.values())
            for _, error in SALVAGED:
                assert any(error in e for e in errors), (error, errors)
            assert all("\x00" not in v.email for v in finals.values())

            letters = [DeadLetter.decode(v) for _, _, _, v in
                       await read_topic(settings, names.dead_letters)]
            from_submissions = [d for d in letters if d.topic == names.submissions]
            assert len(from_submissions) == len(BAD_EVENTS)
            for d, (raw, error) in zip(sorted(from_submissions, key=lambda d: d.offset),
                                       BAD_EVENTS, strict=True):
                assert error in d.error
                if d.payload_encoding == "utf-8":
                    assert d.payload == raw.decode()
                else:
                    assert d.payload_encoding == "base64" and d.payload
            by_domain = [d for d in letters if d.topic == names.by_domain]
            assert len(by_domain) == 1 and "missing field" in by_domain[0].error

        asyncio.run(run())
        assert worker.alive()
    finally:
        worker.stop()



def test_an_address_mailsift_cannot_check_gets_its_verdict_and_the_job_completes(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """A store that refuses us every time (here: a key of the wrong type at notls.test's
    MX host, as another program sharing the Redis prefix could leave) is no outage to wait
    out: that domain's addresses are dead-lettered with the error and get their final
    ``unknown``/``check_failed`` verdicts, so the job completes; the others are checked."""
    import redis.asyncio as aioredis

    env = pipeline_env(world)
    settings = settings_for(env)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    failing = ["alice@notls.test", "bob@notls.test"]
    try:
        async def run() -> None:
            client = aioredis.from_url(settings.redis_url)
            try:
                await client.set(f"{settings.redis_prefix}mx:127.0.1.16:conn", "not a lease")
            finally:
                await client.aclose()
            names = await ensure_topics(settings)
            job = await submit_job(settings, ["alice@ok.test", *failing])
            outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in
                                                         ["alice@ok.test", *failing]},
                                         timeout=90)
            final = outcome.final_by_key()
            got = {v.email: (v.verdict, v.reason, v.temporary) for v in final.values()}
            assert got == {"alice@ok.test": ("deliverable", "ok", False),
                           **{e: ("unknown", "check_failed", False) for e in failing}}
            for e in failing:
                error = str(final[dedupe_key(e)].evidence.get("error"))
                assert "RedisRefused" in error and "WRONGTYPE" in error, error
            completed = outcome.completed()
            assert completed is not None and completed.counts == {"deliverable": 1,
                                                                  "unknown": 2}
            letters = [DeadLetter.decode(v) for _, _, _, v in
                       await read_topic(settings, names.dead_letters)]
            assert len(letters) == len(failing)
            assert all(d.topic == names.by_domain and "WRONGTYPE" in d.error
                       for d in letters), letters

        asyncio.run(run())
        assert worker.alive()
    finally:
        worker.stop()


def test_replay_reverifies_from_the_submissions_topic(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    env = pipeline_env(world)
    settings = settings_for(env)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    first = ["alice@ok.test", "nobody@ok.test", "not an address"]
    second = ["bob@ok.test", "x@catchall.test"]
    try:
        async def original() -> tuple[str, str, str, dict[str, str]]:
            job1 = await submit_job(settings, first)
            out1 = await wait_for_job(settings, job1, {dedupe_key(e) for e in first},
                                      timeout=90)
            await asyncio.sleep(1.1)
            between = datetime.now(UTC).isoformat()
            await asyncio.sleep(1.1)
            job2 = await submit_job(settings, second)
            await wait_for_job(settings, job2, {dedupe_key(e) for e in second}, timeout=90)
            return job1, job2, between, {v.dedupe_key: v.checked_at for v in out1.verdicts}

        job1, job2, between, checked = asyncio.run(original())

        # --job: the whole job again, as a replay run of its own
        result = run_cli(env, "replay", "--job", job1)
        assert result.returncode == 0, result.stderr
        replay_id = re.search(r"replay (\w+): 3 of 5 submissions in 1 job", result.stdout)
        assert replay_id, result.stdout
        rid = replay_id.group(1)

        async def replayed(job: str, rid: str, emails: list[str]) -> Any:
            return await wait_for_job(settings, job, {dedupe_key(e) for e in emails},
                                      timeout=90, replay_id=rid)

        out = asyncio.run(replayed(job1, rid, first))
        assert {v.email: v.reason for v in out.verdicts} == {
            "alice@ok.test": "ok", "nobody@ok.test": "mailbox_not_found",
            "not an address": "syntax"}
        assert all(v.checked_at > checked[v.dedupe_key] for v in out.verdicts)
        completed = out.completed()
        assert completed is not None and completed.total == 3

        # --since: only what was submitted after that moment (job2), by scanning
        result = run_cli(env, "replay", "--since", between)
        assert result.returncode == 0, result.stderr
        match = re.search(r"replay (\w+): 2 of \d+ submissions in 1 job", result.stdout)
        assert match and job2 in result.stdout and job1 not in result.stdout, result.stdout
        asyncio.run(replayed(job2, match.group(1), second))

        # a user-facing check: status of the replay run
        status = run_cli(env, "status", job1, "--replay", rid)
        assert status.returncode == 0 and "completed" in status.stdout, status.stdout
    finally:
        worker.stop()


def test_a_suppressed_domain_and_address_see_no_traffic_at_all(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """#12: `mailsift suppress add` as a user runs it, then a job: the suppressed addresses
    end `unknown`/`suppressed` and their domains see zero DNS queries and zero SMTP
    connections in the world's counters; the other addresses are verified as ever."""
    env = pipeline_env(world)
    settings = settings_for(env)
    added = run_cli(env, "suppress", "add", "ok.test", "bob@catchall.test")
    assert added.returncode == 0, added.stderr
    before = world.stats()
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        emails = ["alice@ok.test", "carol@news.ok.test", "Bob@Catchall.test",
                  "alice@notls.test"]

        async def run() -> dict[str, tuple[str, str]]:
            job = await submit_job(settings, emails)
            outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in emails},
                                         timeout=90)
            return {v.email: (v.verdict, v.reason) for v in outcome.final_by_key().values()}

        got = asyncio.run(run())
    finally:
        worker.stop()
    assert got == {"alice@ok.test": ("unknown", "suppressed"),
                   "carol@news.ok.test": ("unknown", "suppressed"),
                   "Bob@Catchall.test": ("unknown", "suppressed"),
                   "alice@notls.test": ("deliverable", "ok")}
    after = world.stats()

    def queries(stats: dict[str, Any], suffix: str) -> int:
        return sum(n for name, n in stats["dns"]["queries"].items()
                   if name.split("/")[0].endswith(suffix))

    for suffix in ("ok.test", "catchall.test"):
        assert queries(after, suffix) == queries(before, suffix), suffix
    for host in ("mx.ok.test", "mx.catchall.test"):
        assert after["mx"][host]["connections"] == before["mx"][host]["connections"], host
    assert queries(after, "notls.test") > queries(before, "notls.test")  # the counters count
