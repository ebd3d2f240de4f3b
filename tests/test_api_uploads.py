"""A 1,000,000-row CSV through ``mailsift api`` and ``mailsift worker`` run as a user runs
them (subprocesses), on the shared local stack and a bulk simulated world: the 202 comes
within 2 s, the job says ``submitting`` with its counts, every row reaches Postgres (in
order, with its columns) and Kafka, the API's memory stays bounded, and the job completes
with exact counts (20,000 distinct addresses, each in the list 50 times).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from mailsift.settings import Settings
from sinks.postgres import PostgresSink
from streams.topics import bootstrap_servers, ensure_topics
from tests.pipeline_support import (
    WorkerProcess,
    WorldProcess,
    free_port,
    pipeline_env,
    running_world,
    settings_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.asyncio]

TOKEN = "big-" + uuid.uuid4().hex
ROWS = 1_000_000
DOMAINS, ADDRESSES = 800, 25  # user0..user24 on each domain; user0..user19 exist
DISTINCT = DOMAINS * ADDRESSES
#: the API's peak RSS with a 1M-row (47 MB) upload in flight (README, "Large lists")
RSS_LIMIT_MB = 250


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def big_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "million.csv"
    with path.open("w") as f:
        f.write("customer,email,plan\n")
        for i in range(ROWS):
            # row i is address i mod 20,000: each of them 50 times, spread over the list
            f.write(f"C{i},user{i // DOMAINS % ADDRESSES}@bulk{i % DOMAINS}.test,"
                    f"{'pro' if i % 3 else 'free'}\n")
    return path


@pytest.fixture(scope="module")
def world() -> Iterator[WorldProcess]:
    with running_world("--bulk", str(DOMAINS), "--bulk-mailboxes", "20",
                       "--bulk-mx-hosts", "20") as w:
        yield w


@pytest.fixture(scope="module")
def api(stack: Settings, world: WorldProcess, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[str, WorkerProcess, Settings]]:
    env = pipeline_env(world, MAILSIFT_API_TOKENS=TOKEN, MAILSIFT_API_MAX_UPLOAD=str(100 << 20),
                       MAILSIFT_MX_MAX_RCPT_PER_SECOND="200")
    logs = tmp_path_factory.mktemp("big-api")
    worker = WorkerProcess(env, logs / "worker.log")
    port = free_port()
    proc = WorkerProcess(env, logs / "api.log", command=("api", "--port", str(port)))
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, proc, settings_for(env)
        # a client that leaves a download early is one line in the log, not a traceback
        assert "Traceback" not in proc.log_text(), proc.log_text()[-3000:]
        assert worker.alive(), worker.log_text()[-3000:]
        log = worker.log_text()
        assert "Traceback" not in log, log[-3000:]
        # minutes of backlog: faust's stall check must not take it for a stopped stream
        # (the ``jobs`` partitions can wait minutes for their first fetch behind this
        # backlog on Tansu: noted on #14, so only the submissions are held to it here)
        stalled = [line for line in log.splitlines()
                   if "has not started processing" in line and "submissions" in line]
        assert not stalled, stalled[:3]
    finally:
        proc.stop()
        worker.stop()


async def _wait_up(url: str, proc: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert proc.alive(), proc.log_text()[-2000:]
            await asyncio.sleep(0.3)
    raise AssertionError("the API did not start")


async def _records_in(settings: Settings, topic: str) -> int:
    """Records in ``topic``, read from its start (Tansu's end offsets run a few hundred
    short of the records a partition holds, so they are counted, not subtracted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings),
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
        await consumer.seek_to_beginning()
        count = 0
        while batch := await consumer.getmany(timeout_ms=3000, max_records=50_000):
            count += sum(len(records) for records in batch.values())
        return count
    finally:
        await consumer.stop()


@pytest.mark.timeout(2400)  # a million rows stored, produced, then verified: minutes here
async def test_a_million_row_upload_is_answered_at_once_and_completes_in_bounded_memory(
        api: tuple[str, WorkerProcess, Settings], big_list: Path) -> None:
    url, proc, settings = api
    await _wait_up(url, proc)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        body = big_list.read_bytes()
        started = time.monotonic()
        async with http.post(url + "/v1/jobs?name=million", data=body,
                             headers={"Content-Type": "text/csv"}) as resp:
            answer = await resp.json()
            elapsed = time.monotonic() - started
        assert resp.status == 202, answer
        assert elapsed < 2.0, f"202 after {elapsed:.2f} s"
        assert answer["status"] == "submitting" and answer["total"] is None  # counted later
        job_id = answer["job_id"]

        # the job says where it is while its rows are stored, then produced
        seen: set[str] = set()
        reads: list[int] = []
        deadline = time.monotonic() + 600
        while True:
            async with http.get(f"{url}/v1/jobs/{job_id}") as resp:
                status = await resp.json()
            assert resp.status == 200, status
            seen.add(status["status"])
            reads.append(status["rows_read"])
            if status["status"] != "submitting":
                break
            assert status["status"] != "failed", status
            assert time.monotonic() < deadline, status
            await asyncio.sleep(1.0)
        assert status["status"] in {"running", "completed"}, status
        assert (status["total"], status["rows_read"], status["submitted"]) == (ROWS, ROWS, ROWS)
        assert "submitting" in seen and any(0 < n < ROWS for n in reads), reads
        async with http.get(url + "/v1/jobs") as resp:
            listed = {j["job_id"]: j for j in (await resp.json())["jobs"]}
        assert listed[job_id]["name"] == "million" and listed[job_id]["total"] == ROWS
        assert _peak_rss_mb(proc.pid) < RSS_LIMIT_MB, f"{_peak_rss_mb(proc.pid):.0f} MB"

        # the worker verifies it: each distinct address once, every row accounted for
        deadline = time.monotonic() + 1500
        while status["status"] != "completed":
            assert time.monotonic() < deadline, status
            await asyncio.sleep(2.0)
            async with http.get(f"{url}/v1/jobs/{job_id}") as resp:
                status = await resp.json()
            assert resp.status == 200, status
        assert status["done"] == ROWS and status["duplicates"] == ROWS - DISTINCT, status
        assert status["counts"] == {"deliverable": DISTINCT * 20 // ADDRESSES,
                                    "undeliverable": DISTINCT * 5 // ADDRESSES}, status
        # the results: every row, in input order, with its columns; the filter counts rows
        async with http.get(f"{url}/v1/jobs/{job_id}/results?format=csv&offset=999998") as resp:
            tail = (await resp.text()).splitlines()
            assert resp.headers["X-Total-Count"] == str(ROWS)
        assert tail[0].startswith("customer,email,plan,") and len(tail) == 3
        assert tail[1].startswith("C999998,user24@bulk798.test,pro,")
        assert ",undeliverable," in tail[1] and tail[2].startswith("C999999,user24@")
        async with http.get(f"{url}/v1/jobs/{job_id}/results?verdict=deliverable&limit=1"
                            ) as resp:
            assert resp.status == 200 and resp.headers["X-Total-Count"] == str(ROWS * 20 // 25)
    names = await ensure_topics(settings)
    assert await _records_in(settings, names.submissions) == ROWS
    sink = PostgresSink(settings.database_url, max_connections=1)
    try:
        pool = await sink.pool()
        stored = await pool.fetch(
            "SELECT line, cells FROM job_inputs WHERE job_id = $1 AND line IN (2, 500001, "
            "1000001) ORDER BY line", job_id)
        assert [(r["line"], r["cells"]) for r in stored] == [
            (2, '["C0","user0@bulk0.test","free"]'),
            (500001, '["C499999","user24@bulk799.test","pro"]'),
            (1000001, '["C999999","user24@bulk799.test","free"]')]
        assert await pool.fetchval("SELECT count(*) FROM job_inputs WHERE job_id = $1",
                                   job_id) == ROWS
        # erased, the upload's rows go too (they are addresses)
        async with aiohttp.ClientSession(headers=auth) as http, \
                http.delete(f"{url}/v1/jobs/{job_id}") as resp:
            assert resp.status == 200, await resp.text()
        assert await pool.fetchval("SELECT count(*) FROM job_inputs WHERE job_id = $1",
                                   job_id) == 0
    finally:
        await sink.close()
