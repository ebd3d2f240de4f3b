"""An address mailsift cannot check still gets a final verdict, so its job completes.

A domain's check that fails for a reason other than an outage (a bug, a store refusing
us) used to be dead-lettered only, and the job waited for good for that one verdict.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from agents.domain import DomainHandler
from agents.ports import RawEvent, Services
from agents.topics import TopicNames
from agents.verdicts import failed_verdicts
from checks import Engine, EngineConfig
from checks.model import Evidence, ParsedAddress, Reason, Verdict, VerificationResult
from mailsift.settings import Settings, load_settings
from schemas import DeadLetter
from sinks.memory_jobs import MemoryJobStore
from streams.stage import Settle, run_stage
from tests.fakes import FakeEvent, FakeMessage, FakeStream
from tests.test_intake import Recorder

pytestmark = pytest.mark.asyncio


class Refused(RuntimeError):
    """As a store that refuses a request every time (``RedisRefused``)."""


class FailingEngine(Engine):
    """``bad.test`` fails with ``error``; every other address: deliverable, unprobed."""

    def __init__(self, error: Exception) -> None:
        super().__init__(EngineConfig(allow_test_tld=True))
        self.error = error
        self.asked: list[str] = []

    async def verify_domain(self, addresses: Sequence[Any]) -> list[VerificationResult]:
        self.asked.extend(a.ascii_domain for a in addresses)
        if addresses[0].ascii_domain == "bad.test":
            raise self.error
        return [VerificationResult(address=a.original, normalized=a.normalized,
                                   verdict=Verdict.DELIVERABLE, reason=Reason.OK,
                                   temporary=False, evidence=Evidence())
                for a in addresses]


def _settings() -> Settings:
    return load_settings({"MAILSIFT_ALLOW_TEST_TLD": "true",
                          "MAILSIFT_DOMAIN_BATCH_WINDOW": "0.001"}, dotenv=False)


def _task(email: str, **extra: object) -> bytes:
    domain = email.split("@")[1]
    return json.dumps({"job_id": "j", "email": email, "domain": domain,
                       "dedupe_key": email.lower(), "source": "submissions:0:7",
                       **extra}).encode()


EMAILS = ["ann@bad.test", "bob@ok.test", "cid@bad.test"]


def _parts(email: str) -> dict[str, Any]:
    """What intake's syntax check sends along with a task."""
    parsed = Engine(EngineConfig(allow_test_tld=True)).parse(email)
    assert isinstance(parsed, ParsedAddress)
    return parsed.parts()


async def _through_the_stage(error: Exception, values: list[bytes], settle: Settle
                             ) -> tuple[TopicNames, Recorder, list[int]]:
    """``values`` through ``run_stage`` with a domain handler whose bad.test check fails
    with ``error``, as the worker wires it; returns once every event is acked."""
    settings = _settings()
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    handler = DomainHandler(Services(settings, names, FailingEngine(error), MemoryJobStore(),
                                     recorder))
    acked: list[int] = []
    stream = FakeStream([FakeEvent(FakeMessage(i, v, topic=names.by_domain), acked)
                         for i, v in enumerate(values)])
    await run_stage(stream, handler, publisher=recorder,
                    dead_letter_topic=names.dead_letters, max_in_flight=10, name="domain",
                    linger=0.001, settle=settle)
    for _ in range(200):
        if len(acked) == len(values):
            break
        await asyncio.sleep(0.01)
    return names, recorder, acked


async def test_a_domain_whose_check_fails_fails_alone_and_unprobed_again() -> None:
    settings = _settings()
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    engine = FailingEngine(Refused("refused for connection slot of 127.0.1.1: WRONGTYPE"))
    handler = DomainHandler(Services(settings, names, engine, MemoryJobStore(), recorder))
    events = [RawEvent(names.by_domain, 0, i, e.split("@")[1].encode(), _task(e))
              for i, e in enumerate(EMAILS)]
    outcomes = await handler(events)
    why = "Refused: refused for connection slot of 127.0.1.1: WRONGTYPE"
    assert outcomes == [why, None, why]
    # the other domain's verdict went out; the failed one was asked once, not per event
    assert [(t, m["email"]) for t, m in recorder.sent] == [(names.verdicts, "bob@ok.test")]
    assert sorted(engine.asked) == ["bad.test", "bad.test", "ok.test"]


async def test_an_outage_is_no_failure_of_the_check() -> None:
    """A transient error is raised (the stage waits it out and handles the batch again),
    never turned into a verdict."""
    settings = _settings()
    names = TopicNames.from_settings(settings)
    handler = DomainHandler(Services(settings, names, FailingEngine(ConnectionResetError()),
                                     MemoryJobStore(), Recorder()))
    with pytest.raises(ConnectionResetError):
        await handler([RawEvent(names.by_domain, 0, 0, b"bad.test", _task("ann@bad.test"))])


async def test_the_stage_dead_letters_a_failed_task_and_gives_it_its_verdict() -> None:
    """Through ``run_stage`` as the worker wires it: the failed domain's events are
    dead-lettered with the error, and each gets its final ``unknown``/``check_failed``
    verdict (the job's count is whole); the bad event's neighbours are unaffected."""
    verdicts_topic = TopicNames.from_settings(_settings()).verdicts
    names, recorder, acked = await _through_the_stage(
        Refused("WRONGTYPE Operation against a key"),
        [_task(e, address=_parts(e), attempt=2) for e in EMAILS],
        lambda failed: failed_verdicts(verdicts_topic, failed))
    assert acked == [0, 1, 2]
    verdicts = {str(m["email"]): m for t, m in recorder.sent if t == names.verdicts}
    assert set(verdicts) == set(EMAILS)
    assert verdicts["bob@ok.test"]["reason"] == "ok"
    for email in ("ann@bad.test", "cid@bad.test"):
        v = verdicts[email]
        assert (v["verdict"], v["reason"], v["temporary"], v["attempt"]) == (
            "unknown", "check_failed", False, 2)
        assert v["normalized"] == email and v["job_id"] == "j"
        assert v["evidence"]["error"] == "not checked: Refused: WRONGTYPE Operation against a key"
    letters = [DeadLetter.decode(json.dumps(m).encode())
               for t, m in recorder.sent if t == names.dead_letters]
    assert sorted(d.offset for d in letters) == [0, 2]
    assert all("WRONGTYPE" in d.error for d in letters)


async def test_only_an_address_task_gets_a_verdict() -> None:
    """An event that is no task names no job to complete: dead-lettered only."""
    names = TopicNames.from_settings(_settings())
    failed = [(RawEvent(names.by_domain, 0, 0, b"x", b'{"nonsense": true}'), "missing"),
              (RawEvent(names.by_domain, 0, 1, b"x", _task("dan@ok.test")), "Bug: x")]
    [record] = failed_verdicts(names.verdicts, failed)
    sent = json.loads(record.value)
    assert (record.topic, sent["email"], sent["reason"]) == (
        names.verdicts, "dan@ok.test", "check_failed")
    assert record.verdict == ("unknown", "check_failed")


async def test_a_verdict_that_cannot_be_given_does_not_hold_the_stage(
        caplog: pytest.LogCaptureFixture) -> None:
    """The dead letters go out first; a failure to give their verdicts is one error
    line, and the stage's events are acked all the same (its window does not stall)."""
    def settle(failed: object) -> list[Any]:
        raise ValueError("no verdict for you")

    names, recorder, acked = await _through_the_stage(
        Refused("WRONGTYPE"), [_task(e) for e in EMAILS], settle)
    assert acked == [0, 1, 2]
    assert [t for t, _ in recorder.sent].count(names.dead_letters) == 2
    assert "2 dead-lettered events got no verdict: ValueError: no verdict for you" in (
        caplog.text)
