"""The legacy RabbitMQ bridge against a real RabbitMQ: routing, properties, outages.

The outage test runs its own private stack (other ports, its own stack directory) and stops
and restarts *that* RabbitMQ by PID, so the shared stack is never disturbed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest

from mailsift.settings import Settings
from mailsift.stack import stack_down, stack_up
from mailsift.stack.process import load_record, stop
from schemas import VerdictEvent
from sinks.rabbitmq import THREAD_PREFIX, BridgeClosedError, BridgeConfigError, RabbitBridge
from tests.pipeline_support import private_stack_settings, remove_service_data

pytestmark = [pytest.mark.stack, pytest.mark.asyncio]

LOGGER = "sinks.rabbitmq"


def verdict(job: str, i: int, verdict: str = "deliverable", reason: str = "ok") -> VerdictEvent:
    email = f"user{i}@example.com"
    return VerdictEvent(
        job_id=job, email=email, normalized=email, verdict=verdict, reason=reason,
        dedupe_key=email, attempt=1, checked_at=f"2024-05-01T12:00:{i % 60:02d}.000Z",
        evidence={"mx": "mx.example.com"},
    )


def ids(events: list[VerdictEvent]) -> set[str]:
    return {f"{v.job_id}:{v.dedupe_key}:{v.checked_at}" for v in events}


@contextmanager
def amqp(url: str) -> Iterator[Any]:
    """A blocking channel for the test's own consumer side."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def bind_queue(ch: Any, exchange: str, binding: str, queue: str = "",
               durable: bool = False) -> str:
    """Declare the exchange as the bridge does, and a queue bound to it with ``binding``."""
    ch.exchange_declare(exchange, exchange_type="topic", durable=True)
    name: str = ch.queue_declare(queue, durable=durable, exclusive=not durable).method.queue
    ch.queue_bind(name, exchange, routing_key=binding)
    return name


def drain(ch: Any, queue: str) -> list[tuple[Any, Any, bytes]]:
    """Every message now in ``queue`` (publish() returned, so the broker has them)."""
    out = []
    for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=0.5):
        if method is None:
            break
        out.append((method, props, body))
    ch.cancel()
    return out


async def test_each_verdict_once_with_routing_key_properties_and_body(
        stack: Settings) -> None:
    exchange = f"mailsift.verdicts.test-{uuid.uuid4().hex[:8]}"
    job = uuid.uuid4().hex
    events = [
        verdict(job, 0, "undeliverable", "mailbox_not_found"),
        verdict(job, 1, "undeliverable", "no_domain"),
        verdict(job, 2, "deliverable", "ok"),
        verdict(job, 3, "risky", "catch_all"),
        verdict(job, 4, "unknown", "greylisted"),
        verdict(job, 5, "undeliverable", "mailbox_not_found"),
    ]
    with amqp(stack.amqp_url) as ch:
        q_all = bind_queue(ch, exchange, "verdict.#")
        q_undeliverable = bind_queue(ch, exchange, "verdict.undeliverable.*")
        q_catch_all = bind_queue(ch, exchange, "verdict.*.catch_all")
        try:
            async with RabbitBridge(stack.amqp_url, exchange=exchange) as bridge:
                await asyncio.wait_for(bridge.publish(events[:2]), 30)
                await asyncio.wait_for(bridge.publish(events[2:]), 30)

            got = drain(ch, q_all)
            assert len(got) == len(events)  # exactly one message per verdict
            by_id = {props.message_id: (method, props, body) for method, props, body in got}
            assert set(by_id) == ids(events)
            for v in events:
                method, props, body = by_id[f"{v.job_id}:{v.dedupe_key}:{v.checked_at}"]
                assert method.exchange == exchange
                assert method.routing_key == f"verdict.{v.verdict}.{v.reason}"
                assert props.content_type == "application/json"
                assert props.delivery_mode == 2
                assert props.headers == {"job_id": job, "schema_version": 1}
                assert body == v.dumps()
                assert VerdictEvent.decode(body) == v
            assert got[0][0].routing_key == "verdict.undeliverable.mailbox_not_found"
            # published in order
            assert [p.message_id for _, p, _ in got] == [
                f"{v.job_id}:{v.dedupe_key}:{v.checked_at}" for v in events]

            undeliverable = drain(ch, q_undeliverable)
            assert sorted(json.loads(b)["email"] for _, _, b in undeliverable) == [
                "user0@example.com", "user1@example.com", "user5@example.com"]
            assert {m.routing_key for m, _, _ in undeliverable} == {
                "verdict.undeliverable.mailbox_not_found", "verdict.undeliverable.no_domain"}
            catch_all = drain(ch, q_catch_all)
            assert [json.loads(b)["email"] for _, _, b in catch_all] == ["user3@example.com"]
        finally:
            ch.exchange_delete(exchange)


async def test_default_exchange_is_a_durable_topic_exchange(stack: Settings) -> None:
    job = uuid.uuid4().hex
    async with RabbitBridge(stack.amqp_url) as bridge:
        await asyncio.wait_for(bridge.publish([verdict(job, 0)]), 30)  # declares it
        with amqp(stack.amqp_url) as ch:
            # an equivalent declaration succeeds only if the bridge declared the same thing
            queue = bind_queue(ch, "mailsift.verdicts", "verdict.deliverable.ok")
            await asyncio.wait_for(bridge.publish([verdict(job, 1)]), 30)
            # the shared exchange may carry other engineers' verdicts: look at ours only
            mine = [p for _, p, _ in drain(ch, queue) if (p.headers or {}).get("job_id") == job]
            assert [p.message_id for p in mine] == list(ids([verdict(job, 1)]))


async def test_bad_credentials_raise_a_config_error(stack: Settings) -> None:
    url = stack.amqp_url.replace("guest:guest@", "guest:wrong-password@")
    assert url != stack.amqp_url
    bridge = RabbitBridge(url, max_backoff=0.5)
    try:
        with pytest.raises(BridgeConfigError, match="ACCESS_REFUSED") as err:
            await asyncio.wait_for(bridge.publish([verdict("j", 0)]), 30)
        assert "\n" not in str(err.value)
        assert "wrong-password" not in str(err.value)
    finally:
        await bridge.close()


async def test_exchange_of_another_type_raises_a_config_error(stack: Settings) -> None:
    exchange = f"mailsift.verdicts.test-{uuid.uuid4().hex[:8]}"
    with amqp(stack.amqp_url) as ch:
        ch.exchange_declare(exchange, exchange_type="direct", auto_delete=False)
        try:
            async with RabbitBridge(stack.amqp_url, exchange=exchange) as bridge:
                with pytest.raises(BridgeConfigError, match="PRECONDITION_FAILED"):
                    await asyncio.wait_for(bridge.publish([verdict("j", 0)]), 30)
        finally:
            ch.exchange_delete(exchange)


async def test_cancelled_publish_leaves_the_bridge_usable(stack: Settings) -> None:
    exchange = f"mailsift.verdicts.test-{uuid.uuid4().hex[:8]}"
    job = uuid.uuid4().hex
    big = [verdict(job, i) for i in range(100_000)]  # over 2 s to publish: cancelled midway
    after = [verdict(job, 100000 + i, "risky", "role_account") for i in range(5)]
    with amqp(stack.amqp_url) as ch:
        q_big = bind_queue(ch, exchange, "verdict.deliverable.#")
        q_after = bind_queue(ch, exchange, "verdict.risky.#")
        try:
            bridge = RabbitBridge(stack.amqp_url, exchange=exchange)
            task = asyncio.create_task(bridge.publish(big))
            await asyncio.sleep(0.5)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the worker thread stops after its message in flight; the next call works
            await asyncio.wait_for(bridge.publish(after), 30)
            workers = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
            assert len(workers) == 1
            await bridge.close()
            with pytest.raises(BridgeClosedError):
                await bridge.publish(after)

            assert {p.message_id for _, p, _ in drain(ch, q_after)} == ids(after)
            partial = drain(ch, q_big)
            assert len(partial) < len(big)
            assert [p.message_id for _, p, _ in partial] == [
                f"{v.job_id}:{v.dedupe_key}:{v.checked_at}" for v in big[:len(partial)]]
        finally:
            ch.exchange_delete(exchange)


# --- outage, on a private stack ----------------------------------------------------------

async def test_outage_publish_waits_and_nothing_is_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    stack_dir = tmp_path / "stack"
    settings = private_stack_settings(stack_dir, 25100)
    run_dir = stack_dir / "run"
    job = uuid.uuid4().hex
    first = [verdict(job, i, "undeliverable", "mailbox_not_found") for i in range(10)]
    during = [verdict(job, 1000 + i, "deliverable", "ok") for i in range(3000)]
    after_stop = [verdict(job, 10000 + i, "risky", "catch_all") for i in range(20)]
    after_idle_restart = [verdict(job, 20000 + i, "unknown", "timeout") for i in range(5)]
    everything = first + during + after_stop + after_idle_restart

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]

    try:
        await asyncio.to_thread(stack_up, settings)
        url = settings.amqp_url
        with amqp(url) as ch:  # a durable queue, declared before the outage
            bind_queue(ch, "mailsift.verdicts", "verdict.#", queue="legacy.all", durable=True)

        bridge = RabbitBridge(url, max_backoff=1.0)
        try:
            await asyncio.wait_for(bridge.publish(first), 30)

            record = load_record(run_dir, "rabbitmq")
            assert record is not None
            # a large batch in flight while RabbitMQ goes down, then one started after
            in_flight = asyncio.create_task(bridge.publish(during))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(stop, record, run_dir)
            assert load_record(run_dir, "rabbitmq") is None
            started_after = asyncio.create_task(bridge.publish(after_stop))
            await asyncio.sleep(4)
            assert not started_after.done()

            await asyncio.to_thread(stack_up, settings)  # starts only RabbitMQ again
            await asyncio.wait_for(asyncio.gather(in_flight, started_after), 30)
            outage_warnings = warnings()

            # a broker restart while the bridge is idle leaves it a dead connection: the
            # next publish reconnects at once, without a warning
            record = load_record(run_dir, "rabbitmq")
            assert record is not None
            await asyncio.to_thread(stop, record, run_dir)
            await asyncio.to_thread(stack_up, settings)
            started = time.monotonic()
            await asyncio.wait_for(bridge.publish(after_idle_restart), 30)
            assert time.monotonic() - started < 5
            assert warnings() == outage_warnings
            assert any("stale connection" in r.getMessage() for r in caplog.records
                       if r.name == LOGGER)
        finally:
            await bridge.close()

        with amqp(url) as ch:
            got = drain(ch, "legacy.all")
        received = [p.message_id for _, p, _ in got]
        assert len(received) >= len(everything)  # at least once
        assert set(received) == ids(everything)  # every verdict of every batch
        assert all(p.delivery_mode == 2 for _, p, _ in got)

        retries = [r for r in caplog.records if r.name == LOGGER
                   and r.levelno == logging.DEBUG and "retry" in r.getMessage()]
        assert 1 <= len(outage_warnings) <= 4, [r.getMessage() for r in outage_warnings]
        assert len(retries) > len(outage_warnings)  # once per distinct error, not per retry
        # pika's own per-attempt errors from the bridge's thread are turned into DEBUG
        assert not [r for r in caplog.records if r.name.startswith("pika")
                    and (r.threadName or "").startswith(THREAD_PREFIX)]
    finally:
        await asyncio.to_thread(stack_down, settings)
        remove_service_data(stack_dir)
