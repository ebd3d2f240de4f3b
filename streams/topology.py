"""Build the Faust app: topics, agents, rebalance hooks.

>>> from mailsift.settings import load_settings
>>> app = build_app(load_settings({}))
>>> sorted(app.agents)  # doctest: +NORMALIZE_WHITESPACE
['mailsift.bridge-rabbitmq', 'mailsift.domain', 'mailsift.intake', 'mailsift.progress',
 'mailsift.retry-0', 'mailsift.retry-1', 'mailsift.retry-2', 'mailsift.sink-postgres']
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from agents.domain import DomainHandler
from agents.intake import IntakeHandler
from agents.progress import ProgressHandler
from agents.retry import RetryHandler
from agents.sinks import BridgeHandler, PostgresSinkHandler
from mailsift.settings import Settings
from streams.ackwindow import OrderedAckWindow
from streams.fastconsumer import install as install_fast_consumer
from streams.metrics import WorkerMetrics, install_web
from streams.monitor import LeanMonitor
from streams.services import FaustPublisher, Services, build_services
from streams.stage import BatchHandler, run_stage
from streams.topics import TopicNames

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> faust.App:
    """The mailsift Faust app for ``settings`` (not started)."""
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_broker,
        store="memory://",
        autodiscover=False,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 4),
        producer_acks=-1,
        stream_buffer_maxsize=max(4096, settings.max_in_flight * 2),
        Monitor=LeanMonitor,  # no per-event bookkeeping nobody reads (streams/monitor.py)
    )
    install_fast_consumer(app)  # before anything asks for the transport
    names = TopicNames.from_settings(settings)
    metrics = WorkerMetrics()
    services = build_services(settings, metrics.publisher(FaustPublisher(app), names))
    metrics.watch_engine(services.engine)
    app.mailsift_services = services  # type: ignore[attr-defined]
    app.mailsift_metrics = metrics  # type: ignore[attr-defined]
    if settings.web_port > 0:
        install_web(app, metrics)
    windows: list[OrderedAckWindow[Any]] = []

    def topic(*topic_names: str) -> Any:
        return app.topic(*topic_names, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    def stage(name: str, channel: Any, handler: BatchHandler, max_in_flight: int, *,
              linger: float = 0.005) -> None:
        window: OrderedAckWindow[Any] = OrderedAckWindow(max_in_flight,
                                                         lambda event: event.ack())
        windows.append(window)
        metrics.watch_window(name, window)

        async def agent(stream: Any) -> None:
            await run_stage(stream, handler, publisher=services.publisher,
                            dead_letter_topic=names.dead_letters,
                            max_in_flight=max_in_flight, name=name, window=window,
                            metrics=metrics, linger=linger)

        agent.__name__ = agent.__qualname__ = name.replace("-", "_")
        app.agent(channel, name=f"{settings.app_id}.{name}")(agent)

    in_flight = settings.max_in_flight
    stage("intake", topic(names.submissions, names.replays), IntakeHandler(services),
          in_flight)
    stage("domain", topic(names.by_domain), DomainHandler(services), in_flight)
    retry = RetryHandler(services)
    for i, tier in enumerate(names.retries):
        stage(f"retry-{i}", topic(tier), retry, in_flight)
    # the sinks wait a little for fuller batches: fewer, bigger writes
    stage("progress", topic(names.verdicts, names.jobs), ProgressHandler(services), in_flight,
          linger=0.02)
    if settings.database_url:
        from sinks.postgres import PostgresSink

        stage("sink-postgres", topic(names.verdicts, names.jobs),
              PostgresSinkHandler(services, PostgresSink(settings.database_url)), in_flight,
              linger=0.05)
    if settings.amqp_url:
        from sinks.rabbitmq import RabbitBridge

        stage("bridge-rabbitmq", topic(names.verdicts),
              BridgeHandler(services, RabbitBridge(settings.amqp_url)), in_flight,
              linger=0.05)

    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        for window in windows:
            window.revoke(revoked)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        # QUIT the pooled SMTP sessions and give their connection slots back, so a worker
        # started next does not wait for the leases to expire
        try:
            async with asyncio.timeout(5):
                await services.engine.aclose()
        except TimeoutError:
            log.warning("SMTP sessions still closing after 5 s; their leases expire")

    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]
    return app


def services_of(app: faust.App) -> Services:
    services: Services = app.mailsift_services  # type: ignore[attr-defined]
    return services

