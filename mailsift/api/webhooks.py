"""Webhooks: a job submitted with a ``webhook`` URL gets its summary POSTed on completion.

* **At submission** :func:`check_webhook_url` refuses URLs that are not http(s) or whose
  host is (or, for a name, resolves to) a private, loopback, link-local or otherwise
  non-public address, unless it is inside ``MAILSIFT_WEBHOOK_ALLOWED_NETWORKS``. A name is
  resolved with the configured resolver (``MAILSIFT_DNS_NAMESERVERS``), never a literal.
* **At delivery** the HTTP client resolves names through :class:`GuardedResolver`, which
  drops every address the policy refuses, so a name that later resolves elsewhere (DNS
  rebinding) cannot reach an internal address. Redirects are not followed.
* The body is JSON ``{"event": "job.completed", "job_id", "total", "counts",
  "completed_at"}``; ``X-Mailsift-Signature: sha256=<hex HMAC-SHA256 of the raw body with
  MAILSIFT_WEBHOOK_SECRET>``; ``X-Mailsift-Timestamp``: Unix time of the attempt.
  A receiver verifies the signature over the exact bytes it received.
* :class:`WebhookDispatcher` runs in every API instance: it reads the ``jobs`` topic from
  its end (no consumer group), and for each ``completed`` event of a job with a webhook,
  claims the delivery in Redis (``SET NX``, so one instance delivers once), then POSTs with
  up to 5 tries and exponential backoff. A 2xx is success; another 4xx than 408/425/429
  ends the tries.

>>> sign("secret", b'{"job_id": "j1"}')
'sha256=204353a85e6dec0e7c4f8583065794a4b68946af26c9e4bc132cd87559643df6'
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from checks.dns import DnsError, DnspythonResolver
from checks.netpolicy import is_contactable
from mailsift.api.errors import UNAVAILABLE
from mailsift.settings import Settings

__all__ = ["WebhookRefused", "GuardedResolver", "check_webhook_url", "sign", "deliver",
           "WebhookDispatcher", "summary_body"]

log = logging.getLogger("mailsift.api.webhooks")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048


class WebhookRefused(ValueError):
    """The webhook URL may not be used; the message says why in one line."""


def sign(secret: str, body: bytes) -> str:
    """The ``X-Mailsift-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _resolver(settings: Settings) -> DnspythonResolver:
    return DnspythonResolver([(ns.host, ns.port) for ns in settings.dns_nameservers],
                             timeout=settings.dns_timeout)


async def _addresses(resolver: DnspythonResolver, host: str, *, ipv6: bool = True
                     ) -> list[str]:
    """A and AAAA addresses of ``host``; DnsError when neither resolves."""
    out: list[str] = []
    last: DnsError | None = None
    for rdtype in ("A", "AAAA") if ipv6 else ("A",):
        try:
            out.extend((await resolver.query(host, rdtype)).records)
        except DnsError as exc:
            last = exc
    if not out:
        assert last is not None
        raise last
    return out


def _refusal(host: str, ip: str) -> WebhookRefused:
    return WebhookRefused(
        f"webhook host {host} is {ip}, a private/loopback/link-local or reserved address; "
        "allow its network in MAILSIFT_WEBHOOK_ALLOWED_NETWORKS")


async def check_webhook_url(url: str, settings: Settings, allowed: Sequence[Network]) -> str:
    """``url`` when it may be used as a webhook, else :class:`WebhookRefused`."""
    if len(url) > MAX_URL_LENGTH or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise WebhookRefused(f"webhook must be a URL of at most {MAX_URL_LENGTH} characters "
                             "without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookRefused("webhook must be an http:// or https:// URL with a host")
    if port == 0:
        raise WebhookRefused("webhook port must be from 1 to 65535")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        if not is_contactable(str(literal), allowed):
            raise _refusal(host, str(literal))
        return url
    try:
        host.encode("idna")
        addresses = await _addresses(_resolver(settings), host)
    except (DnsError, UnicodeError) as exc:
        raise WebhookRefused(f"webhook host {host!r} does not resolve: {exc}") from None
    for ip in addresses:
        if not is_contactable(ip, allowed):
            raise _refusal(host, ip)
    return url


class GuardedResolver(AbstractResolver):
    """aiohttp resolver: the configured nameservers, refused addresses dropped."""

    def __init__(self, settings: Settings, allowed: Sequence[Network]) -> None:
        self._resolver = _resolver(settings)
        self._allowed = tuple(allowed)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await _addresses(self._resolver, host,
                                         ipv6=family != socket.AF_INET)
        except DnsError as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from None
        out: list[ResolveResult] = []
        for ip in addresses:
            if not is_contactable(ip, self._allowed):
                continue
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            out.append(ResolveResult(hostname=host, host=ip, port=port, family=fam,
                                     proto=0, flags=socket.AI_NUMERICHOST))
        if not out:
            raise OSError(f"{host} resolves only to addresses webhooks may not reach")
        return out

    async def close(self) -> None:
        return None


def summary_body(job_id: str, total: int | None, counts: dict[str, int] | None,
                 completed_at: str | None) -> bytes:
    """The webhook's JSON body.

    >>> summary_body("j1", 2, {"deliverable": 2}, "2026-01-01T00:00:00Z")[:40]
    b'{"event": "job.completed", "job_id": "j1'
    """
    return json.dumps({"event": "job.completed", "job_id": job_id, "total": total,
                       "counts": counts or {}, "completed_at": completed_at}).encode()


_RETRYABLE_4XX = frozenset({408, 425, 429})


async def deliver(session: aiohttp.ClientSession, url: str, body: bytes, secret: str, *,
                  allowed: Sequence[Network], tries: int = 5, first_delay: float = 1.0,
                  timeout: float = 10.0) -> bool:
    """POST ``body`` to ``url``, signed; retry with exponential backoff. True when a 2xx."""
    delivery = uuid.uuid4().hex
    host = urlsplit(url).hostname or ""
    try:
        literal: str | None = str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        literal = None
    if literal is not None and not is_contactable(literal, allowed):
        log.warning("webhook %s refused: %s is not allowed", url, literal)
        return False
    for attempt in range(1, tries + 1):
        headers = {"Content-Type": "application/json", "User-Agent": "mailsift-webhook/1",
                   "X-Mailsift-Signature": sign(secret, body),
                   "X-Mailsift-Timestamp": str(int(time.time())),
                   "X-Mailsift-Delivery": delivery, "X-Mailsift-Attempt": str(attempt)}
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True
                outcome = f"HTTP {resp.status}"
                if 400 <= resp.status < 500 and resp.status not in _RETRYABLE_4XX:
                    log.warning("webhook %s answered %s: not retried", url, outcome)
                    return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        log.info("webhook %s attempt %d/%d failed (%s)", url, attempt, tries, outcome)
        if attempt < tries:
            await asyncio.sleep(first_delay * 2 ** (attempt - 1))
    log.warning("webhook %s failed after %d tries", url, tries)
    return False


class WebhookDispatcher:
    """Follows the ``jobs`` topic and delivers the webhooks of completed jobs."""

    def __init__(self, state: Any, *, tries: int = 5, first_delay: float = 1.0) -> None:
        self.state = state  # mailsift.api.state.ApiState
        self.tries = tries
        self.first_delay = first_delay
        self.ready = asyncio.Event()
        self._deliveries: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Consume forever; reconnect with backoff when Kafka is away."""
        from aiokafka import AIOKafkaConsumer

        from schemas import JobEvent, SchemaError
        from streams.topics import bootstrap_servers, ensure_topics

        settings: Settings = self.state.settings
        backoff = 1.0
        try:
            while True:
                try:
                    names = await ensure_topics(settings)
                    consumer = AIOKafkaConsumer(
                        names.jobs, bootstrap_servers=bootstrap_servers(settings),
                        group_id=None, enable_auto_commit=False, auto_offset_reset="latest")
                    await consumer.start()
                    try:
                        await self._position(consumer)
                        backoff = 1.0
                        async for msg in consumer:
                            try:
                                event = JobEvent.decode(msg.value)
                            except SchemaError:
                                continue
                            if event.kind == "completed" and event.replay_id is None:
                                await self.on_completed(event)
                    finally:
                        self.ready.clear()
                        await consumer.stop()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Kafka or Redis away: try again later
                    log.warning("webhook dispatcher: %s: %s; retrying in %.0fs",
                                type(exc).__name__, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            for task in list(self._deliveries):
                task.cancel()

    async def _position(self, consumer: Any) -> None:
        """Fix the start offsets now (the end), so no later completion is missed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not consumer.assignment() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        self.ready.set()

    async def on_completed(self, event: Any) -> None:
        """Deliver the webhook of a completed job, if it has one and nobody else does.

        A Redis failure is retried a few times (the consumer must not stop for it).
        """
        for attempt in range(1, 6):
            try:
                record = await self.state.jobs.get(event.job_id)
                url = record.get("webhook")
                if not url or not await self.state.jobs.claim_webhook(event.job_id):
                    return
                break
            except UNAVAILABLE as exc:
                log.warning("webhook of job %s: Redis: %s: %s (try %d/5)", event.job_id,
                            type(exc).__name__, exc, attempt)
                if attempt == 5:
                    self.state.metrics.webhooks.labels(outcome="failed").inc()
                    return
                await asyncio.sleep(attempt)
        body = summary_body(event.job_id, event.total, event.counts, event.at)
        task = asyncio.create_task(self._deliver(url, body))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, url: str, body: bytes) -> None:
        state = self.state
        ok = await deliver(state.http, url, body, state.config.webhook_secret,
                           allowed=state.config.webhook_allowed_networks, tries=self.tries,
                           first_delay=self.first_delay)
        state.metrics.webhooks.labels(outcome="delivered" if ok else "failed").inc()
