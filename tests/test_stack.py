"""The local stack: real Tansu, Postgres, Redis and RabbitMQ answer, and up/down is exact."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mailsift.settings import Settings
from mailsift.stack.process import alive, load_record
from tests.pipeline_support import remove_service_data

pytestmark = pytest.mark.stack


def test_kafka_roundtrip(stack: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = stack.kafka_broker.removeprefix("kafka://")
    topic = f"mailsift.test-{uuid.uuid4().hex[:8]}"

    async def roundtrip() -> bytes:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            return bytes(msg.value or b"")
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == b"hello"


def test_postgres_answers(stack: Settings) -> None:
    import asyncpg

    async def query() -> str:
        conn = await asyncpg.connect(stack.database_url)
        try:
            return str(await conn.fetchval("SELECT current_database()"))
        finally:
            await conn.close()

    assert asyncio.run(query()) == "mailsift"


def test_redis_answers(stack: Settings) -> None:
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    key = f"mailsift:test:{uuid.uuid4().hex}"
    client.set(key, "v", ex=10)
    assert client.get(key) == b"v"
    client.delete(key)


def test_rabbitmq_roundtrip(stack: Settings) -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(stack.amqp_url))
    try:
        ch = conn.channel()
        q = ch.queue_declare(queue="", exclusive=True).method.queue
        ch.basic_publish(exchange="", routing_key=q, body=b"ping")
        for _ in range(50):
            method, _props, body = ch.basic_get(q, auto_ack=True)
            if method is not None:
                break
            conn.sleep(0.1)
        assert body == b"ping"
    finally:
        conn.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_stack_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    """A second, independent stack on other ports: up, up again (idempotent), down."""
    ports = {"kafka": 29092, "postgres": 25432, "redis": 26379, "rabbitmq": 25673}
    env = {
        **os.environ,
        "MAILSIFT_STACK_DIR": str(tmp_path / "stack"),
        "MAILSIFT_KAFKA_BROKER": f"kafka://127.0.0.1:{ports['kafka']}",
        "MAILSIFT_DATABASE_URL": f"postgresql://mailsift@127.0.0.1:{ports['postgres']}/mailsift",
        "MAILSIFT_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "MAILSIFT_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{ports['rabbitmq']}/%2F",
        "COLUMNS": "200",
    }
    cli = [sys.executable, "-m", "mailsift.cli.main", "stack"]

    def run(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, cmd], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=240)

    first = run("up")
    run_dir = tmp_path / "stack" / "run"
    records = {n: load_record(run_dir, n) for n in ["kafka", "postgres", "redis",
                                                   "rabbitmq", "epmd"]}
    try:
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("started") == 4
        assert all(alive(r) for r in records.values()), records
        assert all(_port_open(p) for p in ports.values())

        second = run("up")
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("running") == 4 and "started" not in second.stdout
        again = {n: load_record(run_dir, n) for n in records}
        assert again == records  # nothing restarted

        assert run("status").returncode == 0
    finally:
        down = run("down")
        remove_service_data(tmp_path / "stack")
    assert down.returncode == 0, down.stderr
    assert not any(alive(r) for r in records.values())
    assert not any(_port_open(p) for p in ports.values())
    assert not list(run_dir.glob("*.json"))
    assert run("status").returncode == 1
