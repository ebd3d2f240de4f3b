"""Daily probe budgets without the stack: the arithmetic, the engine's use of it, and
where the domain stage sends an address its budget had no room for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from agents.domain import DomainHandler
from agents.ports import RawEvent, Services
from agents.topics import TopicNames
from checks import Engine, EngineConfig
from checks.budget import DailyProbeBudget, MemoryDailyCounter, next_budget_day
from checks.engine import budget_result
from checks.model import MxResult, MxStatus, Reason, Verdict, VerificationResult
from mailsift.settings import load_settings
from sinks.memory_jobs import MemoryJobStore
from tests.test_intake import Recorder

pytestmark = pytest.mark.asyncio


async def test_a_budget_grants_what_is_left_and_the_mx_host_is_shared() -> None:
    budget = DailyProbeBudget(MemoryDailyCounter(), domain_limit=10, mx_limit=15)
    first = await budget.take("a.test", "mx.test", 8)
    assert (first.granted, first.exhausted) == (8, None)
    second = await budget.take("a.test", "mx.test", 8)
    assert (second.granted, second.exhausted, second.limit) == (2, "domain a.test", 10)
    other = await budget.take("b.test", "mx.test", 8)  # the MX host has 5 left
    assert (other.granted, other.exhausted, other.limit) == (5, "MX host mx.test", 15)
    # what the MX host refused stays b.test's: 10 - 5 left for it on another host
    assert (await budget.take("b.test", "mx2.test", 8)).granted == 5
    nothing = DailyProbeBudget(MemoryDailyCounter(), domain_limit=0, mx_limit=0)
    assert (await nothing.take("a.test", "mx.test", 10**6)).granted == 10**6


class OverBudgetEngine(Engine):
    """Every address: over its budget."""

    async def verify_domain(self, addresses: Sequence[Any]) -> list[VerificationResult]:
        from checks.budget import BudgetGrant
        from checks.engine import DomainFacts

        facts = DomainFacts(MxResult(MxStatus.OK, []), None, None, None, 0.0)
        grant = BudgetGrant(0, "domain ok.test", 3)
        return [budget_result(a, facts, grant) for a in addresses]


@pytest.mark.parametrize("wait", [True, False])
async def test_the_domain_stage_holds_or_ends_an_address_past_its_budget(wait: bool) -> None:
    settings = load_settings({"MAILSIFT_ALLOW_TEST_TLD": "true",
                              "MAILSIFT_DOMAIN_BATCH_WINDOW": "0.001"}, dotenv=False)
    names = TopicNames.from_settings(settings)
    recorder = Recorder()
    handler = DomainHandler(Services(settings, names, OverBudgetEngine(
        EngineConfig(allow_test_tld=True)), MemoryJobStore(), recorder))
    task = {"job_id": "j", "email": "alice@ok.test", "domain": "ok.test",
            "dedupe_key": "alice@ok.test", "source": "submissions:0:0", "attempt": 2,
            "history": [{"attempt": 1, "reason": "greylisted"}], "wait_for_budget": wait}
    assert await handler([RawEvent(names.by_domain, 0, 0, b"ok.test",
                                   json.dumps(task).encode())]) == [None]
    [(topic, sent)] = recorder.sent
    if wait:
        # not an attempt: the same attempt, history unchanged, due when the next day starts
        assert topic == names.budget_wait
        assert (sent["attempt"], sent["history"], sent["last_reason"]) == (
            2, task["history"], "probe_budget")
        assert next_budget_day() < sent["due_at"] <= next_budget_day() + 60
    else:
        assert topic == names.verdicts
        assert (sent["verdict"], sent["reason"]) == (Verdict.UNKNOWN.value,
                                                     Reason.PROBE_BUDGET.value)
        assert "daily probe budget of domain ok.test (3)" in sent["evidence"]["error"]


class ScriptedProber:
    """Answers every recipient with ``reply`` (None: a connection that failed)."""

    def __init__(self, reply: bool) -> None:
        self.reply = reply
        self.asked: list[list[str]] = []

    async def probe(self, mx: Any, recipients: list[str]) -> Any:
        from checks.model import RcptResult, ReplyClass, SmtpReply
        from checks.probe import ProbeReport

        self.asked.append(list(recipients))
        if self.reply:
            return ProbeReport({r: RcptResult(SmtpReply(250, "ok"), ReplyClass.ACCEPTED)
                                for r in recipients})
        return ProbeReport({r: RcptResult(None, None, Reason.CONNECTION_FAILED,
                                          error="refused") for r in recipients})


async def _engine_with(budget: DailyProbeBudget, prober: ScriptedProber) -> Engine:
    from checks.engine import DomainFacts
    from checks.model import MxHost

    engine = Engine(EngineConfig(allow_test_tld=True), budget=budget)
    facts = DomainFacts(MxResult(MxStatus.OK, (MxHost(10, "mx.ok.test", ("127.0.0.9",)),)),
                        None, None, None, 0.0)

    async def domain_facts(domain: str) -> DomainFacts:
        return facts

    engine.domain_facts = domain_facts  # type: ignore[method-assign]
    engine.prober = prober  # type: ignore[assignment]
    return engine


async def test_the_engine_asks_no_more_than_the_budget_and_gives_back_what_was_not_asked(
        ) -> None:
    counter = MemoryDailyCounter()
    budget = DailyProbeBudget(counter, domain_limit=5, mx_limit=0)
    parse = Engine(EngineConfig(allow_test_tld=True)).parse
    addresses = [parse(f"user{i}@ok.test") for i in range(8)]
    refused = ScriptedProber(reply=False)
    engine = await _engine_with(budget, refused)
    results = await engine.verify_domain(addresses)  # type: ignore[arg-type]
    # 5 asked (a catch-all probe and 4 addresses), nobody answered: all 5 are given back
    assert [len(a) for a in refused.asked] == [5]
    assert [r.reason for r in results].count(Reason.PROBE_BUDGET) == 4
    assert (await budget.take("ok.test", "mx.ok.test", 5)).granted == 5
    await budget.give_back("ok.test", "mx.ok.test", 5)
    # a server that answers: the budget is spent, and the same address twice counts once
    answered = ScriptedProber(reply=True)
    engine = await _engine_with(budget, answered)
    twice = [parse("user0@ok.test"), parse("user0@ok.test"), *addresses[1:3]]
    results = await engine.verify_domain(twice)  # type: ignore[arg-type]
    assert [len(a) for a in answered.asked] == [4]  # catch-all probe + 3 distinct
    assert all(r.reason is not Reason.PROBE_BUDGET for r in results)
    assert (await budget.take("ok.test", "mx.ok.test", 5)).granted == 1
