"""Worker metrics: the registry's counters move; a real worker serves them at /metrics."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.ports import Done, RawEvent, Record
from agents.topics import TopicNames
from checks import Engine, EngineConfig
from checks.model import RcptResult, Reason, ReplyClass, SmtpReply
from mailsift.settings import Settings, load_settings
from streams.ackwindow import OrderedAckWindow
from streams.client import submit_job
from streams.metrics import NO_REPLY, WorkerMetrics
from streams.stage import run_stage
from streams.topics import ensure_topics
from tests.fakes import FakeEvent, FakeMessage, FakeStream
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    dedupe_key,
    eventually,
    pipeline_env,
    produce_raw,
    settings_for,
    wait_for_job,
)
from tests.world import World, default_world

pytestmark = pytest.mark.stack

TOPICS = TopicNames.from_settings(load_settings({"MAILSIFT_TOPIC_PREFIX": "m."}))


# --- unit tests -------------------------------------------------------------------------------

class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail = fail

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, key, value))

    async def publish_many(self, records: Sequence[Record]) -> None:
        for r in records:
            await self.publish(r.topic, r.key, r.value)


def test_publisher_counts_verdicts_and_retries_once_produced() -> None:
    m = WorkerMetrics()
    pub = m.publisher(FakePublisher(), TOPICS)

    async def run() -> None:
        verdict = json.dumps({"verdict": "deliverable", "reason": "ok"}).encode()
        await pub.publish(TOPICS.verdicts, b"j", verdict)
        await pub.publish(TOPICS.verdicts, b"j", verdict)
        await pub.publish(TOPICS.verdicts, b"j", b"not json")  # ignored, never raises
        await pub.publish(TOPICS.retries[1], b"d", b"{}")
        await pub.publish(TOPICS.by_domain, b"d", b"{}")
        failing = m.publisher(FakePublisher(fail=True), TOPICS)
        with pytest.raises(ConnectionError):
            await failing.publish(TOPICS.verdicts, b"j", verdict)

    asyncio.run(run())
    assert m.value("mailsift_addresses_total", verdict="deliverable", reason="ok") == 2
    assert m.value("mailsift_retries_total", tier="0") == 0  # every tier shown from zero
    assert m.value("mailsift_retries_total", tier="1") == 1
    info = [line for line in m.exposition().decode().splitlines()
            if line.startswith("mailsift_build_info{")]
    assert len(info) == 1 and 'version="0.1.0"' in info[0] and info[0].endswith(" 1.0")


def test_rcpt_results_counted_by_reply_class() -> None:
    m = WorkerMetrics()
    engine = Engine(EngineConfig())
    m.watch_engine(engine)
    ok = RcptResult(SmtpReply(250, "OK", "2.1.5"), ReplyClass.ACCEPTED)
    engine.observer.rcpt_result(ok)
    engine.observer.rcpt_result(ok)
    engine.observer.rcpt_result(RcptResult(None, None, Reason.TIMEOUT, error="slow"))
    assert m.value("mailsift_smtp_replies_total", reply_class="accepted") == 2
    assert m.value("mailsift_smtp_replies_total", reply_class=NO_REPLY) == 1
    assert m.value("mailsift_smtp_replies_total", reply_class="mailbox_not_found") == 0


def test_dns_cache_and_in_flight_read_at_scrape() -> None:
    m = WorkerMetrics()
    engine = Engine(EngineConfig())
    m.watch_engine(engine)
    engine.resolver.hits, engine.resolver.misses = 3, 1
    engine.smtp.late_permits = 4
    window: OrderedAckWindow[int] = OrderedAckWindow(10, lambda item: None)
    m.watch_window("domain", window)

    async def admit() -> None:
        await window.admit("tp0", 0, 0)
        await window.admit("tp0", 1, 1)

    asyncio.run(admit())
    assert m.value("mailsift_dns_cache_hits_total") == 3
    assert m.value("mailsift_dns_cache_misses_total") == 1
    assert m.value("mailsift_rcpt_permits_late_total") == 4
    assert m.value("mailsift_events_in_flight", stage="domain") == 2
    assert m.value("mailsift_dead_letters_total", stage="domain") == 0
    text = m.exposition().decode()
    assert 'mailsift_events_in_flight{stage="domain"} 2.0' in text


def test_run_stage_records_latency_and_dead_letters() -> None:
    m = WorkerMetrics()
    acked: list[int] = []
    events = [FakeEvent(FakeMessage(i, b"bad" if i == 1 else b"ok"), acked) for i in range(3)]

    async def handler(events: Sequence[RawEvent], done: Done | None = None
                      ) -> list[str | None]:
        await asyncio.sleep(0.01)
        return ["not JSON" if e.value == b"bad" else None for e in events]

    async def run() -> None:
        pub = FakePublisher()
        await run_stage(FakeStream(events), handler, publisher=pub,
                        dead_letter_topic=TOPICS.dead_letters, max_in_flight=10,
                        name="intake", metrics=m)
        for _ in range(100):
            if len(acked) == 3:
                break
            await asyncio.sleep(0.01)

    asyncio.run(run())
    assert acked == [0, 1, 2]
    assert m.value("mailsift_stage_seconds_count", stage="intake") == 3
    # one batch: every event took the handler's 10 ms, the malformed one too
    assert m.value("mailsift_stage_seconds_bucket", stage="intake", le="0.005") == 0
    assert m.value("mailsift_stage_seconds_bucket", stage="intake", le="0.5") == 3
    assert m.value("mailsift_dead_letters_total", stage="intake") == 1


def test_engine_reports_rcpt_results_to_its_observer() -> None:
    async def run() -> WorkerMetrics:
        m = WorkerMetrics()
        async with World(default_world()) as world:
            host, port = world.nameserver.rsplit(":", 1)
            engine = Engine(EngineConfig(
                nameservers=((host, int(port)),), smtp_port=world.smtp_port,
                allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
                allow_test_tld=True, mx_rcpt_per_second=500.0, check_auth_records=False))
            m.watch_engine(engine)
            await engine.verify_many(["alice@ok.test", "nobody@ok.test"])
            await engine.verify("bob@ok.test")  # MX answer now cached
        return m

    m = asyncio.run(run())
    # ok.test is not a catch-all: the probe address is refused (counted too)
    assert m.value("mailsift_smtp_replies_total", reply_class="accepted") == 2
    assert m.value("mailsift_smtp_replies_total", reply_class="mailbox_not_found") == 2
    assert (m.value("mailsift_dns_cache_hits_total") or 0) > 0


# --- a real worker ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def samples(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
            ) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in metrics.items() if n == name}


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    w = WorldProcess("--greylist-seconds", "1")
    yield w
    w.stop()


def test_worker_serves_metrics_of_a_job(stack: Settings, world: WorldProcess,
                                        tmp_path: Path) -> None:
    port = free_port()
    env = pipeline_env(world, MAILSIFT_WEB_PORT=str(port))
    settings = settings_for(env)
    base = f"http://127.0.0.1:{port}"
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        def healthy() -> None:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                    body: dict[str, Any] = json.loads(resp.read())
            except OSError as exc:
                raise AssertionError(str(exc)) from exc
            assert resp.status == 200 and body["status"] == "ok"

        eventually(healthy, timeout=30)

        def ready() -> None:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
                    body: dict[str, Any] = json.loads(resp.read())
            except OSError as exc:  # 503 (HTTPError) while it joins the group
                raise AssertionError(str(exc)) from exc
            assert resp.status == 200 and body == {
                "status": "ready", "checks": {"group": "joined", "redis": "ok",
                                              "postgres": "ok"}}, body

        eventually(ready, timeout=60)
        first = ["alice@ok.test", "nobody@ok.test", "carol@greylist.test", "not an address"]

        async def run() -> list[Any]:
            names = await ensure_topics(settings)
            await produce_raw(settings, names.submissions, [(b"j-bad", b"{not json")])
            verdicts: list[Any] = []
            # bob's domain comes in a later batch: its DNS answers come from the cache
            for emails in (first, ["bob@ok.test"]):
                job = await submit_job(settings, emails)
                outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in emails},
                                             timeout=30)
                verdicts += outcome.verdicts
            return verdicts

        verdicts = asyncio.run(run())
        expected = Counter((v.verdict, v.reason) for v in verdicts)
        assert expected[("deliverable", "ok")] == 3  # carol after one retry

        def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            metrics = scrape(f"{base}/metrics")
            by_verdict = {(dict(k)["verdict"], dict(k)["reason"]): v for k, v in
                          samples(metrics, "mailsift_addresses_total").items()}
            assert by_verdict == expected
            return metrics

        # the progress stage may still be handling the last verdicts: wait for its count
        def settled() -> None:
            m = scraped()
            stage_counts = {dict(k)["stage"]: v for k, v in
                            samples(m, "mailsift_stage_seconds_count").items()}
            assert stage_counts["intake"] >= 1 + len(first) + 1
            assert stage_counts["domain"] >= 4
            assert stage_counts["retry-0"] >= 1
            assert stage_counts["progress"] >= len(verdicts)

        eventually(settled, timeout=10)
        m = scraped()
        replies = {dict(k)["reply_class"]: v for k, v in
                   samples(m, "mailsift_smtp_replies_total").items()}
        assert replies["accepted"] >= 3 and replies["mailbox_not_found"] >= 1
        assert replies["temporary"] >= 1  # greylisted once
        assert samples(m, "mailsift_retries_total")[frozenset({("tier", "0")})] == 1
        dead = {dict(k)["stage"]: v for k, v in samples(m, "mailsift_dead_letters_total").items()}
        assert dead["intake"] == 1 and dead["domain"] == 0
        assert samples(m, "mailsift_dns_cache_hits_total")[frozenset()] > 0
        assert set(dict(k)["stage"] for k in samples(m, "mailsift_events_in_flight")) >= {
            "intake", "domain", "progress"}
        assert len(samples(m, "mailsift_build_info")) == 1
        assert worker.alive()
    finally:
        worker.stop()
