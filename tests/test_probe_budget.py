"""#12: the daily probe budgets per domain and per MX host, on the real stack.

A 10,000-address job on one domain gets no more RCPT probes than the domain's budget (the
world's counter says so); two domains on one MX host share the host's budget; a job that
waits holds its addresses, unprobed, in ``retries.budget`` until the next UTC day.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.topics import TopicNames
from checks.budget import next_budget_day
from mailsift.settings import Settings
from schemas import AddressTask
from streams.client import job_progress, read_topic, submit_job
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    dedupe_key,
    pipeline_env,
    running_world,
    settings_for,
    wait_for_job,
)

pytestmark = pytest.mark.stack

DOMAIN_BUDGET = 40
MX_BUDGET = 50


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    # bulk{i}.test has MX mx{i % 4}.bulk.test: bulk0 and bulk4 share mx0, bulk1 is alone on mx1
    with running_world("--no-default", "--bulk", "8", "--bulk-mailboxes", "10000") as w:
        yield w


def _rcpt(world: WorldProcess, host: str) -> int:
    return int(world.stats()["mx"][host]["rcpt"])


def test_the_daily_budgets_hold_under_a_10000_address_job(
        stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    env = pipeline_env(world, MAILSIFT_DOMAIN_DAILY_PROBES=str(DOMAIN_BUDGET),
                       MAILSIFT_MX_DAILY_PROBES=str(MX_BUDGET), MAILSIFT_AMQP_URL="",
                       MAILSIFT_DATABASE_URL="", MAILSIFT_MX_MAX_RCPT_PER_SECOND="200")
    settings = settings_for(env)
    big = [f"user{i}@bulk1.test" for i in range(10_000)]
    shared = [f"user{i}@bulk0.test" for i in range(30)] + [f"user{i}@bulk4.test"
                                                            for i in range(30)]
    before = {h: _rcpt(world, h) for h in ("mx0.bulk.test", "mx1.bulk.test")}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        async def run() -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], list[str]]:
            job = await submit_job(settings, big, wait_for_budget=False)
            outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in big},
                                         timeout=240)
            finals = outcome.final_by_key().values()
            big_counts = Counter((v.verdict, v.reason) for v in finals)
            job2 = await submit_job(settings, shared, wait_for_budget=False)
            outcome2 = await wait_for_job(settings, job2, {dedupe_key(e) for e in shared},
                                          timeout=120)
            finals2 = list(outcome2.final_by_key().values())
            shared_counts = Counter((v.verdict, v.reason) for v in finals2)
            errors = [str(v.evidence.get("error")) for v in finals2
                      if v.reason == "probe_budget"]
            return big_counts, shared_counts, errors

        big_counts, shared_counts, errors = asyncio.run(run())
        asked_mx1 = _rcpt(world, "mx1.bulk.test") - before["mx1.bulk.test"]
        asked_mx0 = _rcpt(world, "mx0.bulk.test") - before["mx0.bulk.test"]
        # the domain's budget, the catch-all probe included, and not one RCPT more
        assert asked_mx1 == DOMAIN_BUDGET
        probed = big_counts[("deliverable", "ok")]
        assert probed == DOMAIN_BUDGET - 1, big_counts
        assert big_counts[("unknown", "probe_budget")] == len(big) - probed
        assert sum(big_counts.values()) == len(big)
        # two domains on one MX host: the host's budget holds for both together
        assert asked_mx0 == MX_BUDGET
        assert shared_counts[("unknown", "probe_budget")] == len(shared) - (MX_BUDGET - 2)
        assert errors and all("MX host mx0.bulk.test" in e for e in errors), errors[:3]

        # a job that waits: nothing of it is asked today, its addresses wait unprobed
        async def waiting() -> None:
            emails = [f"user{i}@bulk1.test" for i in range(10_000, 10_005)]
            job = await submit_job(settings, emails)
            names = TopicNames.from_settings(settings)
            for _ in range(120):
                tasks = [AddressTask.decode(v) for _, _, _, v in
                         await read_topic(settings, names.budget_wait, idle=0.5)]
                mine = [t for t in tasks if t.job_id == job]
                if len(mine) == len(emails):
                    break
                await asyncio.sleep(0.5)
            assert sorted(t.email for t in mine) == sorted(emails)
            assert all(t.attempt == 1 and (t.due_at or 0) >= next_budget_day() for t in mine)
            progress = await job_progress(settings, job)
            assert progress.done == 0 and not progress.completed

        asyncio.run(waiting())
        assert _rcpt(world, "mx1.bulk.test") - before["mx1.bulk.test"] == DOMAIN_BUDGET
    finally:
        worker.stop()
