"""Fault drills mid-job (issue #9): Redis killed, Redis emptied, the broker paused. The
job completes with exact counts every time.

Each test has a private stack (so killing its Redis disturbs nobody) and a world of 20
domains. The job has 200 addresses, 20 repeats and 5 non-addresses: 225 submissions,
180 deliverable and 45 accounted otherwise (20 unknown mailboxes, 5 syntax, 20 repeats).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsift.settings import Settings
from mailsift.stack import stack_up
from mailsift.stack.manager import run_dir
from mailsift.stack.process import alive, load_record
from streams.client import job_progress, submit_job
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
    with_env,
)

pytestmark = pytest.mark.stack

ADDRESSES = [f"user{j}@bulk{i}.test" for i in range(20) for j in range(10)]
EMAILS = ADDRESSES + [a.replace("user", "User") for a in ADDRESSES[::10]] + [
    f"not an address {i}" for i in range(5)]


@pytest.fixture
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with private_stack(tmp_path_factory.mktemp("stack"), 25160, database=False,
                       amqp=False) as settings:
        yield settings


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    with running_world("--no-default", "--bulk", "20", "--bulk-mailboxes", "9",
                       "--bulk-mx-hosts", "4") as w:
        yield w


def kill_redis(settings: Settings, *, lose_data: bool) -> None:
    """SIGKILL the stack's Redis (no shutdown save); optionally delete what it persisted."""
    rdir = run_dir(settings)
    record = load_record(rdir, "redis")
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    while alive(record):
        time.sleep(0.05)
    (rdir / "redis.json").unlink(missing_ok=True)
    if lose_data:
        shutil.rmtree(settings.stack_dir / "redis", ignore_errors=True)


def run_job_through_a_redis_crash(settings_env: dict[str, str], stack: Settings,
                                  tmp_path: Path, *, lose_data: bool) -> str:
    """Run the job, SIGKILL Redis after 60 verdicts, restart it 3 s later; the worker's
    log."""
    settings = settings_for(settings_env)
    worker = WorkerProcess(settings_env, tmp_path / "worker.log")
    killed: list[bool] = []

    async def crash_redis_midway(seen: int) -> None:
        if not killed and seen >= 60:
            await asyncio.to_thread(kill_redis, stack, lose_data=lose_data)
            killed.append(True)
            await asyncio.sleep(3)  # the stages wait it out
            await asyncio.to_thread(stack_up, stack)  # starts only the missing Redis

    try:
        async def run() -> None:
            job = await submit_job(settings, EMAILS)
            outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in EMAILS},
                                         timeout=180, on_verdict=crash_redis_midway)
            completed = outcome.completed()
            assert completed is not None
            assert completed.total == len(EMAILS)
            assert completed.counts == {"deliverable": 180, "undeliverable": 25}
            progress = await job_progress(settings, job)
            assert (progress.total, progress.final, progress.duplicates) == (225, 205, 20)

        asyncio.run(run())
        assert killed, "Redis was never killed mid-job"
        assert worker.alive()
        log = worker.log_text()
        assert "Traceback" not in log
        return log
    finally:
        worker.stop()


def test_redis_killed_mid_job_keeps_every_count_and_every_limit(
        own_stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """Redis persists every acknowledged write (AOF, fsync always): after a SIGKILL and a
    restart the job state and the connection leases are all there."""
    env = pipeline_env(world, **stack_env(own_stack), MAILSIFT_MX_MAX_RCPT_PER_SECOND="5")
    log = run_job_through_a_redis_crash(env, own_stack, tmp_path, lose_data=False)
    # the state survived: only the new Redis's first job needed the log (an empty one)
    assert log.count("reading it from the event log") == 1, log[-3000:]
    hosts = world.stats()["mx"].values()
    assert max(h["max_simultaneous"] for h in hosts) <= 2  # MAILSIFT_MX_MAX_CONNECTIONS
    assert sum(h["rejected_connections"] for h in hosts) == 0


def test_a_redis_that_lost_everything_gets_the_job_state_back_from_the_log(
        own_stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """Redis comes back empty (its files gone): the job state is rebuilt from the topics
    and the job still completes with exact counts."""
    env = pipeline_env(world, **stack_env(own_stack), MAILSIFT_MX_MAX_RCPT_PER_SECOND="5")
    log = run_job_through_a_redis_crash(env, own_stack, tmp_path, lose_data=True)
    assert log.count("reading it from the event log") == 2, log[-3000:]


def test_the_broker_paused_for_30_s_mid_job_is_waited_out(
        own_stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """SIGSTOP the broker for 30 s mid-job (every stage's fetches and produces hang, then
    time out), then SIGCONT: the job completes with exact counts and nothing is
    dead-lettered."""
    from agents.topics import TopicNames
    from streams.client import read_topic

    env = pipeline_env(world, **stack_env(own_stack), MAILSIFT_MX_MAX_RCPT_PER_SECOND="5")
    settings = settings_for(env)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    paused: list[bool] = []

    async def pause_broker_midway(seen: int) -> None:
        if not paused and seen >= 60:
            record = load_record(run_dir(own_stack), "kafka")
            assert record is not None
            os.kill(record.pid, signal.SIGSTOP)
            paused.append(True)
            try:
                await asyncio.sleep(30)
            finally:
                os.kill(record.pid, signal.SIGCONT)

    try:
        async def run() -> None:
            job = await submit_job(settings, EMAILS)
            outcome = await wait_for_job(settings, job, {dedupe_key(e) for e in EMAILS},
                                         timeout=240, on_verdict=pause_broker_midway)
            completed = outcome.completed()
            assert completed is not None
            assert completed.counts == {"deliverable": 180, "undeliverable": 25}
            letters = await read_topic(settings, TopicNames.from_settings(settings).dead_letters)
            assert letters == []

        asyncio.run(run())
        assert paused, "the broker was never paused mid-job"
        assert worker.alive()
        assert "Traceback" not in worker.log_text()
    finally:
        worker.stop()


def test_validate_waits_out_a_broker_paused_for_30_s(
        own_stack: Settings, world: WorldProcess, tmp_path: Path) -> None:
    """`mailsift validate` as a user runs it, the broker SIGSTOPped for 30 s while the CLI
    follows the job: it waits, then writes one row per input line, in order, and exits 0."""
    import csv
    import re
    import subprocess
    import sys

    from tests.pipeline_support import REPO

    env = pipeline_env(world, **stack_env(own_stack), MAILSIFT_MX_MAX_RCPT_PER_SECOND="5")
    settings = settings_for(env)
    src, out, err = tmp_path / "list.txt", tmp_path / "out.csv", tmp_path / "stderr.txt"
    src.write_text("\n".join(EMAILS) + "\n")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    record = load_record(run_dir(own_stack), "kafka")
    assert record is not None
    try:
        with err.open("w") as stderr:
            cli = subprocess.Popen(
                [sys.executable, "-m", "mailsift.cli.main", "validate", str(src), "-o",
                 str(out), "--timeout", "300"],
                cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            job = None
            while job is None and time.monotonic() < deadline and cli.poll() is None:
                found = re.search(r"job (\w{32})", err.read_text())
                job = found.group(1) if found else None
                time.sleep(0.2)
            assert job is not None, err.read_text()[-2000:]
            while asyncio.run(job_progress(settings, job)).final < 60:
                assert time.monotonic() < deadline and cli.poll() is None, err.read_text()
                time.sleep(0.2)
            os.kill(record.pid, signal.SIGSTOP)
            try:
                time.sleep(30)
                assert cli.poll() is None, "validate gave up while the broker was paused"
            finally:
                os.kill(record.pid, signal.SIGCONT)
            assert cli.wait(timeout=300) == 0, err.read_text()[-2000:]
        finally:
            if cli.poll() is None:
                cli.kill()
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["email"] for r in rows] == EMAILS
        verdicts = [r["verdict"] for r in rows]
        assert verdicts.count("deliverable") == 180 + 20  # the repeats share their verdict
        assert verdicts.count("undeliverable") == 25
        assert "Traceback" not in err.read_text() and "Unclosed" not in err.read_text()
        assert "Traceback" not in worker.log_text()
    finally:
        worker.stop()


def test_the_api_waits_out_a_broker_paused_for_20_s(
        tmp_path_factory: pytest.TempPathFactory, world: WorldProcess, tmp_path: Path) -> None:
    """The API as a user calls it while the broker is SIGSTOPped for 20 s: `/readyz` says
    Kafka is down, a `POST /v1/jobs` sent during the pause is answered 202 at once (the list
    is delivered in the background), the job stays `submitting` through the pause (not
    failed, not lost), and completes with exact counts once the broker is back. The worker
    is started just before the pause: its start waits the pause out too."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from mailsift.api.app import create_app

    with private_stack(tmp_path_factory.mktemp("stack"), 25170, amqp=False) as stack:
        env = pipeline_env(world, **stack_env(stack), MAILSIFT_MX_MAX_RCPT_PER_SECOND="50")
        settings = settings_for(env)
        worker = WorkerProcess(env, tmp_path / "worker.log")
        record = load_record(run_dir(stack), "kafka")
        assert record is not None
        auth = {"Authorization": "Bearer drill-token"}

        async def run() -> None:
            app = create_app(with_env(settings, {"MAILSIFT_API_TOKENS": "drill-token"}))
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            try:
                async with aiohttp.ClientSession() as http:
                    async def call(method: str, path: str, **kw: object
                                   ) -> tuple[int, dict[str, object]]:
                        async with http.request(method, str(server.make_url(path)),
                                                headers=auth, **kw) as resp:  # type: ignore[arg-type]
                            return resp.status, await resp.json()

                    assert (await call("GET", "/readyz"))[0] == 200
                    # an API that has served a job: its first status read met the new
                    # Redis and rebuilt the job state from the log (that needs Kafka)
                    status, body = await call("POST", "/v1/jobs", json={"emails": EMAILS[:1]})
                    assert status == 202, body
                    status, body = await call("GET", f"/v1/jobs/{body['job_id']}")
                    assert status == 200, body
                    os.kill(record.pid, signal.SIGSTOP)
                    try:
                        status, body = await asyncio.wait_for(
                            call("POST", "/v1/jobs", json={"emails": EMAILS}), 10)
                        assert status == 202 and body["status"] == "submitting", body
                        job = str(body["job_id"])
                        await asyncio.sleep(5)
                        status, body = await call("GET", "/readyz")
                        assert status == 503, body
                        for _ in range(3):  # through the pause: still on its way
                            status, body = await call("GET", f"/v1/jobs/{job}")
                            assert status == 200 and body["status"] == "submitting", body
                            assert body["submitted"] < len(EMAILS), body
                            await asyncio.sleep(5)
                    finally:
                        os.kill(record.pid, signal.SIGCONT)
                    deadline = time.monotonic() + 180
                    while True:
                        status, body = await call("GET", f"/v1/jobs/{job}")
                        assert status == 200, body
                        if body.get("status") == "completed":
                            break
                        assert time.monotonic() < deadline, body
                        await asyncio.sleep(0.5)
                    assert body["total"] == len(EMAILS)
                    assert body["counts"] == {"deliverable": 180, "undeliverable": 25}, body
                    assert (await call("GET", "/readyz"))[0] == 200
            finally:
                await server.close()

        try:
            asyncio.run(run())
            assert "Traceback" not in worker.log_text()
        finally:
            worker.stop()
