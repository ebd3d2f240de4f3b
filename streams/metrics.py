"""Prometheus metrics of one worker, served at ``GET /metrics`` on its web server.

One :class:`WorkerMetrics` per Faust app (its own ``CollectorRegistry``, so several apps in
one process never clash). What it counts, and where from:

* ``mailsift_addresses_total{verdict,reason}`` — final verdicts produced to ``verdicts``
  (every stage's, through :meth:`WorkerMetrics.publisher`);
* ``mailsift_retries_total{tier}`` — tasks produced to ``retries.N`` (same wrapper);
* ``mailsift_smtp_replies_total{reply_class}`` — RCPT outcomes seen by the engine
  (:class:`checks.engine.EngineObserver`); ``no_reply`` for transport failures;
* ``mailsift_stage_seconds{stage}`` and ``mailsift_dead_letters_total{stage}`` — recorded
  by :func:`streams.stage.run_stage`;
* read at scrape time: ``mailsift_events_in_flight{stage}`` (the stages'
  :class:`~streams.ackwindow.OrderedAckWindow`) and ``mailsift_dns_cache_hits_total`` /
  ``mailsift_dns_cache_misses_total`` (the engine's :class:`~checks.dns.CachingResolver`),
  and ``mailsift_rcpt_permits_late_total`` (RCPT permits the probe gave up as too late,
  :meth:`checks.politeness.RcptPermits.late`);
* ``mailsift_build_info{version,python,faust}`` and the ``process_*`` metrics.

>>> m = WorkerMetrics()
>>> m.verdict("deliverable", "ok")
>>> m.value("mailsift_addresses_total", verdict="deliverable", reason="ok")
1.0
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.ports import Record
from agents.topics import TopicNames
from checks.dns import CachingResolver
from checks.engine import Engine
from checks.model import RcptResult, ReplyClass
from streams.ackwindow import OrderedAckWindow

__all__ = ["WorkerMetrics", "MeteredPublisher", "install_web", "STAGE_BUCKETS", "NO_REPLY"]


def _version() -> str:
    try:
        return version("mailsift")  # the installed distribution's (pyproject.toml)
    except PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


__version__ = _version()

# handler latency spans milliseconds (intake) to the retry tiers' delays (up to 15 min)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                 120.0, 300.0, 600.0, 900.0, 1800.0)
NO_REPLY = "no_reply"  # reply_class of a transport failure (timeout, refused, not allowed)


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


class WorkerMetrics:
    """The worker's metrics; also the engine's observer (:meth:`rcpt_result`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.addresses = Counter("mailsift_addresses", "Final verdicts produced.",
                                 ["verdict", "reason"], registry=r)
        self.smtp_replies = Counter("mailsift_smtp_replies",
                                    "SMTP RCPT outcomes by reply class.", ["reply_class"],
                                    registry=r)
        self.stage_seconds = Histogram("mailsift_stage_seconds",
                                       "Time to handle one event, per stage.", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.retries = Counter("mailsift_retries", "Tasks sent to a retry tier.", ["tier"],
                               registry=r)
        self.dead_letters = Counter("mailsift_dead_letters",
                                    "Malformed events sent to dead-letters.", ["stage"],
                                    registry=r)
        self.build_info = Info("mailsift_build", "mailsift build.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version(),
                              "faust": _dist_version("faust-streaming")})
        for cls in [*ReplyClass, NO_REPLY]:
            self.smtp_replies.labels(str(cls))
        self.windows: dict[str, OrderedAckWindow[Any]] = {}
        self.resolvers: list[CachingResolver] = []
        self.engines: list[Engine] = []
        r.register(_ScrapeTimeCollector(self))
        ProcessCollector(registry=r)

    # --- recording ---------------------------------------------------------------------------

    def verdict(self, verdict: str, reason: str) -> None:
        self.addresses.labels(verdict, reason).inc()

    def retry(self, tier: int) -> None:
        self.retries.labels(str(tier)).inc()

    def rcpt_result(self, result: RcptResult) -> None:
        """:class:`checks.engine.EngineObserver`: one recipient's SMTP outcome."""
        cls = result.reply_class
        self.smtp_replies.labels(NO_REPLY if cls is None else cls.value).inc()

    def stage_handled(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def stage_handled_many(self, stage: str, seconds: Iterable[float]) -> None:
        """One observation per event of a batch (each from its admission to its end)."""
        observe = self.stage_seconds.labels(stage).observe
        for value in seconds:
            observe(value)

    def dead_letter(self, stage: str) -> None:
        self.dead_letters.labels(stage).inc()

    # --- sources -----------------------------------------------------------------------------

    def watch_window(self, stage: str, window: OrderedAckWindow[Any]) -> None:
        """Report the stage's in-flight events (and show its series from zero)."""
        self.windows[stage] = window
        self.stage_seconds.labels(stage)
        self.dead_letters.labels(stage)

    def watch_engine(self, engine: Engine) -> None:
        """Observe the engine's SMTP outcomes and its DNS cache counters."""
        engine.observer = self
        self.resolvers.append(engine.resolver)
        self.engines.append(engine)

    def publisher(self, inner: Any, topics: TopicNames) -> MeteredPublisher:
        """Wrap a publisher: count verdicts and retries once the broker has them."""
        for tier in range(len(topics.retries)):
            self.retries.labels(str(tier))
        return MeteredPublisher(inner, self, topics)

    # --- reading -----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (:data:`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float | None:
        """A sample's current value (tests, debugging)."""
        return self.registry.get_sample_value(name, labels)


class _ScrapeTimeCollector(Collector):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterable[Metric]:
        in_flight = GaugeMetricFamily("mailsift_events_in_flight",
                                      "Events admitted and not yet acked, per stage.",
                                      labels=["stage"])
        for stage, window in self.m.windows.items():
            in_flight.add_metric([stage], window.in_flight())
        hits = CounterMetricFamily("mailsift_dns_cache_hits",
                                   "DNS lookups answered from the cache.",
                                   value=sum(r.hits for r in self.m.resolvers))
        misses = CounterMetricFamily("mailsift_dns_cache_misses",
                                     "DNS lookups not found in the cache.",
                                     value=sum(r.misses for r in self.m.resolvers))
        late = CounterMetricFamily(
            "mailsift_rcpt_permits_late",
            "RCPT permits not used because they came too late (new ones were reserved).",
            value=sum(e.smtp.late_permits for e in self.m.engines))
        return [in_flight, hits, misses, late]


class MeteredPublisher:
    """A :class:`streams.stage.Publisher` that counts what it produced."""

    def __init__(self, inner: Any, metrics: WorkerMetrics, topics: TopicNames) -> None:
        self.inner = inner
        self.metrics = metrics
        self.verdicts = topics.verdicts
        self.tiers = {topic: i for i, topic in enumerate(topics.retries)}

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.inner.publish(topic, key, value)
        self._count(Record(topic, key, value))

    async def publish_many(self, records: Sequence[Record]) -> None:
        await self.inner.publish_many(records)
        for record in records:
            self._count(record)

    def _count(self, record: Record) -> None:
        if record.topic == self.verdicts:
            if record.verdict is not None:
                self.metrics.verdict(*record.verdict)
                return
            try:
                event = orjson.loads(record.value)
                self.metrics.verdict(str(event["verdict"]), str(event["reason"]))
            except (ValueError, KeyError, TypeError):  # not ours to judge; never fail here
                pass
        elif record.topic in self.tiers:
            self.metrics.retry(self.tiers[record.topic])


def install_web(app: Any, metrics: WorkerMetrics) -> None:
    """Add ``GET /metrics`` and ``GET /healthz`` to the Faust app's web server."""
    from faust import web

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def mailsift_metrics(self: web.View, request: web.Request) -> web.Response:
        # aiohttp refuses a charset in content_type=, so the header is passed whole
        return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def mailsift_healthz(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "ok", "app": app.conf.id, "pid": os.getpid(),
                          "version": __version__, "in_flight": dict(_in_flight(metrics))})


def _in_flight(metrics: WorkerMetrics) -> Iterator[tuple[str, int]]:
    for stage, window in metrics.windows.items():
        yield stage, window.in_flight()
