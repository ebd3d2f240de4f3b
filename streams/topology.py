"""Build the Faust app: topics, agents, rebalance hooks.

>>> from mailsift.compose import build_services
>>> from mailsift.settings import load_settings
>>> app = build_app(load_settings({}), build_services)
>>> sorted(app.agents)  # doctest: +NORMALIZE_WHITESPACE
['mailsift.bridge-rabbitmq', 'mailsift.domain', 'mailsift.intake', 'mailsift.progress',
 'mailsift.retry-0', 'mailsift.retry-1', 'mailsift.retry-2', 'mailsift.retry-budget',
 'mailsift.sink-postgres']
>>> import tempfile; str(app.conf.datadir).startswith(tempfile.gettempdir())  # not the cwd
True
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust

from agents.domain import DomainHandler
from agents.intake import IntakeHandler
from agents.ports import BatchHandler, Publisher, Services
from agents.progress import ProgressHandler
from agents.retry import RetryHandler
from agents.sinks import BridgeHandler, PostgresSinkHandler
from agents.topics import TopicNames
from agents.verdicts import failed_verdicts
from mailsift.settings import Settings
from streams.ackwindow import OrderedAckWindow
from streams.fastconsumer import install as install_fast_consumer
from streams.metrics import WorkerMetrics, install_web
from streams.monitor import LeanMonitor
from streams.publisher import FaustPublisher
from streams.purge import purge_forever
from streams.readiness import install_readiness
from streams.stage import Settle, run_stage
from streams.worker import WorkerStartError

__all__ = ["build_app"]

log = logging.getLogger(__name__)


#: builds the handlers' ports for a worker (``mailsift.compose.build_services``)
ServicesFactory = Callable[[Settings, Publisher], Services]


def faust_datadir() -> Path:
    """The directory Faust's ``<app id>-data/`` goes in, made if missing: one per user in
    the temp dir (Faust makes only the last level of its path, and a directory another user
    made is not writable). Raises :class:`~streams.worker.WorkerStartError` when it cannot
    be made.

    >>> faust_datadir().is_dir()
    True
    """
    path = Path(tempfile.gettempdir()) / f"mailsift-faust-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid != os.getuid():
            raise PermissionError(errno.EPERM, "owned by another user")
    except OSError as exc:
        raise WorkerStartError(f"cannot make Faust's data directory {path}: {exc.strerror}; "
                               "set TMPDIR to a writable directory") from None
    return path


def build_app(settings: Settings, services_for: ServicesFactory) -> faust.App:
    """The mailsift Faust app for ``settings`` (not started); its handlers get the ports
    ``services_for`` composes."""
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_broker,
        store="memory://",
        # the memory store keeps nothing on disk, but Faust still makes `<app id>-data/`
        # (with `v1/tables/`), by default in the working directory: not in the user's
        datadir=str(faust_datadir() / "{conf.name}-data"),
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
        # batches of produce requests: a third less broker CPU per address (bench/README.md)
        producer_linger=settings.kafka_produce_linger,
        stream_buffer_maxsize=max(4096, settings.max_in_flight * 2),
        Monitor=LeanMonitor,  # no per-event bookkeeping nobody reads (streams/monitor.py)
        # A rebalance or a shutdown must not wait for every in-flight event (at polite
        # rates that is minutes): unacked events are redelivered, and the ack window never
        # acks past an unfinished one. A shutdown drains within MAILSIFT_DRAIN_SECONDS.
        stream_wait_empty=False,
    )
    install_fast_consumer(app)  # before anything asks for the transport
    names = TopicNames.from_settings(settings)
    metrics = WorkerMetrics()
    services = services_for(settings, metrics.publisher(FaustPublisher(app), names))
    metrics.watch_engine(services.engine)
    app.mailsift_services = services  # type: ignore[attr-defined]
    app.mailsift_metrics = metrics  # type: ignore[attr-defined]
    if settings.web_port > 0:
        install_web(app, metrics)
        install_readiness(app, services)
    windows: list[OrderedAckWindow[Any]] = []

    def topic(*topic_names: str) -> Any:
        return app.topic(*topic_names, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    def stage(name: str, channel: Any, handler: BatchHandler, max_in_flight: int, *,
              linger: float = 0.005, settle: Settle | None = None) -> None:
        window: OrderedAckWindow[Any] = OrderedAckWindow(max_in_flight,
                                                         lambda event: event.ack())
        windows.append(window)
        metrics.watch_window(name, window)

        async def agent(stream: Any) -> None:
            await run_stage(stream, handler, publisher=services.publisher,
                            dead_letter_topic=names.dead_letters,
                            max_in_flight=max_in_flight, name=name, window=window,
                            metrics=metrics, linger=linger, settle=settle)

        agent.__name__ = agent.__qualname__ = name.replace("-", "_")
        app.agent(channel, name=f"{settings.app_id}.{name}")(agent)

    in_flight = settings.max_in_flight
    stage("intake", topic(names.submissions, names.replays), IntakeHandler(services),
          in_flight)
    # an address task these stages cannot handle still gets its verdict: its job completes
    tasks_settle = functools.partial(failed_verdicts, names.verdicts)
    stage("domain", topic(names.by_domain), DomainHandler(services), in_flight,
          settle=tasks_settle)
    retry = RetryHandler(services)
    for i, tier in enumerate(names.retries):
        stage(f"retry-{i}", topic(tier), retry, in_flight, settle=tasks_settle)
    stage("retry-budget", topic(names.budget_wait), retry, in_flight, settle=tasks_settle)
    # the sinks wait a little for fuller batches: fewer, bigger writes
    stage("progress", topic(names.verdicts, names.jobs), ProgressHandler(services), in_flight,
          linger=0.02)
    if services.sink is not None:
        stage("sink-postgres", topic(names.verdicts, names.jobs),
              PostgresSinkHandler(services, services.sink), in_flight, linger=0.05)
    if services.sink is not None and settings.purge_interval > 0:
        sink = services.sink

        async def retention_purge() -> None:
            await purge_forever(settings, sink)

        app.task(retention_purge)
    if services.bridge is not None:
        stage("bridge-rabbitmq", topic(names.verdicts),
              BridgeHandler(services, services.bridge), in_flight, linger=0.05)

    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        for window in windows:
            window.revoke(revoked)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await drain(app, windows, services, settings.drain_seconds)

    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]
    return app


async def drain(app: faust.App, windows: list[OrderedAckWindow[Any]], services: Services,
                seconds: float) -> None:
    """A stopping worker's last ``seconds``: take no more events, let the in-flight ones
    finish while there is time, then QUIT the pooled SMTP sessions and give their slots
    back (so a worker started next does not wait for the leases to expire). Faust then
    commits the acked prefix and leaves the group; what did not finish is redelivered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    quit_budget = min(3.0, seconds / 3)
    try:
        app.consumer.stop_flow()  # fetched events not yet taken stay unacked
        app.flow_control.suspend()
    except Exception as exc:  # noqa: BLE001 - a consumer that never started
        log.debug("drain: no consumer to stop (%s)", exc)
    def in_flight() -> int:
        return sum(w.in_flight() for w in windows)

    if in_flight():
        log.info("draining: %d events in flight, up to %.0f s", in_flight(), seconds)
    while in_flight() and loop.time() < deadline - quit_budget:
        await asyncio.sleep(0.1)
    left = in_flight()
    if left:
        log.warning("draining: %d events unfinished after %.0f s; they will be redelivered",
                    left, seconds - quit_budget)
    try:
        async with asyncio.timeout(max(0.5, deadline - loop.time())):
            await services.engine.aclose()
    except TimeoutError:
        log.warning("SMTP sessions still closing at the drain deadline; their leases expire")


def services_of(app: faust.App) -> Services:
    services: Services = app.mailsift_services  # type: ignore[attr-defined]
    return services

