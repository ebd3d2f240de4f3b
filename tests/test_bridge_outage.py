"""RabbitMQ stopped in the middle of a pipeline job: the legacy consumer still gets every
verdict once RabbitMQ is back, and the worker never crashes.

Runs on a private stack of its own, so stopping its RabbitMQ disturbs nobody else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from mailsift.settings import Settings
from mailsift.stack import stack_up
from mailsift.stack.manager import run_dir
from mailsift.stack.process import load_record, stop
from streams.client import submit_job
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

EMAILS = [f"user{j}@bulk{i}.test" for i in range(20) for j in range(10)]


@pytest.fixture
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with private_stack(tmp_path_factory.mktemp("stack"), 25120, database=False) as settings:
        yield settings


@pytest.fixture
def world() -> Iterator[WorldProcess]:
    with running_world("--no-default", "--bulk", "20", "--bulk-mailboxes", "9") as w:
        yield w


def durable_queue(url: str, name: str) -> None:
    """A legacy system's durable queue, bound before the job (it survives the restart)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.exchange_declare("mailsift.verdicts", exchange_type="topic", durable=True)
        ch.queue_declare(name, durable=True)
        ch.queue_bind(name, "mailsift.verdicts", routing_key="verdict.#")
    finally:
        conn.close()


def drain(url: str, name: str, job: str, want: int, timeout: float) -> set[str]:
    """message_ids of the job's verdicts in the queue, until ``want`` distinct ones."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < want:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(url))
        except pika.exceptions.AMQPConnectionError:
            time.sleep(0.5)
            continue
        try:
            ch = conn.channel()
            while len(seen) < want and time.monotonic() < deadline:
                method, props, _ = ch.basic_get(name, auto_ack=True)
                if method is None:
                    conn.sleep(0.3)
                    continue
                if (props.headers or {}).get("job_id") == job:
                    seen.add(props.message_id)
        finally:
            conn.close()
    return seen


def test_rabbitmq_down_mid_job_loses_no_verdict(own_stack: Settings, world: WorldProcess,
                                                tmp_path: Path) -> None:
    s = own_stack
    env = pipeline_env(world, **stack_env(s), MAILSIFT_MX_MAX_RCPT_PER_SECOND="40")
    settings = settings_for(env)
    durable_queue(s.amqp_url, "legacy-crm")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    rdir = run_dir(s)
    stopped: list[bool] = []

    async def stop_rabbitmq_midway(seen: int) -> None:
        if not stopped and seen >= 20:
            record = load_record(rdir, "rabbitmq")
            assert record is not None
            await asyncio.to_thread(stop, record, rdir)
            stopped.append(True)

    try:
        async def run() -> str:
            job = await submit_job(settings, EMAILS)
            await wait_for_job(settings, job, {dedupe_key(e) for e in EMAILS}, timeout=120,
                               on_verdict=stop_rabbitmq_midway)
            return job

        job = asyncio.run(run())
        assert stopped, "RabbitMQ was never stopped mid-job"
        time.sleep(10)
        assert worker.alive()
        stack_up(s)  # starts only what is missing: RabbitMQ (and its epmd)
        ids = drain(s.amqp_url, "legacy-crm", job, len(EMAILS), timeout=90)
        assert len(ids) == len(EMAILS)  # every verdict arrived (at least once)
        assert worker.alive()
        assert "Traceback" not in worker.log_text()
    finally:
        worker.stop()
