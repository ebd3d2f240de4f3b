"""Prometheus metrics of the API (``GET /metrics``), in a registry of the app's own.

* ``mailsift_api_requests_total{route,method,status}`` and
  ``mailsift_api_request_duration_seconds{route,method,status}``: every request, by route
  template (``/v1/jobs/{job_id}``, never the raw path) and status;
* ``mailsift_api_jobs_submitted_total``, ``mailsift_api_addresses_submitted_total``;
* ``mailsift_api_webhooks_total{outcome}``: webhook attempts (delivered, retrying, failed);
* ``mailsift_stored_verdicts{verdict}``: addresses per verdict in Postgres, counted at scrape;
* ``mailsift_dead_letter_records``: records in the dead-letters topic, counted by a
  background scan every 60 s (reading the new records only), -1 until the first scan.

(The workers' own ``/metrics``, :mod:`streams.metrics`, count what they produce; these
names differ from theirs so both can be scraped into one Prometheus.)

>>> m = ApiMetrics()
>>> m.jobs_submitted.inc(); m.addresses_submitted.inc(3)
>>> b"mailsift_api_addresses_submitted_total 3.0" in m.render()
True
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ApiMetrics", "metrics_middleware", "route_label"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class ApiMetrics:
    """The API's collectors, in a private :class:`CollectorRegistry` (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mailsift_api_requests", "API requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "mailsift_api_request_duration_seconds",
            "Time to answer an API request (to the end of a streamed body).",
            ["route", "method", "status"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.jobs_submitted = Counter(
            "mailsift_api_jobs_submitted", "Jobs submitted through the API (incl. /v1/verify).",
            registry=self.registry)
        self.addresses_submitted = Counter(
            "mailsift_api_addresses_submitted", "Addresses submitted through the API.",
            registry=self.registry)
        self.webhooks = Counter(
            "mailsift_api_webhooks",
            "Webhook attempts by outcome (delivered, retrying, failed: given up).",
            ["outcome"], registry=self.registry)
        self.verdicts = Gauge(
            "mailsift_stored_verdicts", "Addresses per verdict stored in Postgres (all jobs).",
            ["verdict"], registry=self.registry)
        self.dead_letters = Gauge(
            "mailsift_dead_letter_records",
            "Records in the dead-letters topic (background scan; -1 = not counted yet).",
            registry=self.registry)
        self.dead_letters.set(-1)

    def set_verdicts(self, counts: Mapping[str, int]) -> None:
        """Replace the per-verdict gauge with ``counts``."""
        self.verdicts.clear()
        for verdict, n in counts.items():
            self.verdicts.labels(verdict=verdict).set(n)

    def render(self) -> bytes:
        """The exposition text of every collector."""
        return generate_latest(self.registry)


def route_label(request: web.Request) -> str:
    """The matched route's template; unmatched paths share one label (bounded cardinality)."""
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


def metrics_middleware(metrics: ApiMetrics) -> Middleware:
    """Outermost middleware: count and time every request by route and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            method = request.method if request.method in _METHODS else "other"
            labels = {"route": route_label(request), "method": method,
                      "status": str(status)}
            metrics.requests.labels(**labels).inc()
            metrics.latency.labels(**labels).observe(time.perf_counter() - started)

    return middleware
