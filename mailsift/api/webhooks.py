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
* ``X-Mailsift-Delivery`` is the delivery's id, the same on every attempt (a receiver
  keeps one per id); ``X-Mailsift-Attempt`` counts the attempts from 1.
* :func:`post_once` makes one attempt; :mod:`mailsift.api.webhook_dispatch` schedules and
  retries them.

>>> sign("secret", b'{"job_id": "j1"}')
'sha256=204353a85e6dec0e7c4f8583065794a4b68946af26c9e4bc132cd87559643df6'
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from checks.dns import DnsError, DnspythonResolver
from checks.netpolicy import is_contactable
from mailsift.logs import strip_queries, strip_query
from mailsift.resolver import resolver_for
from mailsift.settings import Settings

__all__ = ["Answer", "WebhookRefused", "GuardedResolver", "check_webhook_url", "sign",
           "post_once", "summary_body"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048


class WebhookRefused(ValueError):
    """The webhook URL may not be used; the message says why in one line."""


def sign(secret: str, body: bytes) -> str:
    """The ``X-Mailsift-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
        addresses = await _addresses(resolver_for(settings), host)
    except (DnsError, UnicodeError) as exc:
        raise WebhookRefused(f"webhook host {host!r} does not resolve: {exc}") from None
    for ip in addresses:
        if not is_contactable(ip, allowed):
            raise _refusal(host, ip)
    return url


class GuardedResolver(AbstractResolver):
    """aiohttp resolver: the configured nameservers, refused addresses dropped."""

    def __init__(self, settings: Settings, allowed: Sequence[Network]) -> None:
        self._resolver = resolver_for(settings)
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


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST of a webhook got: ``ok`` (a 2xx), else whether to try again later."""

    ok: bool
    retry: bool
    outcome: str
    status: int | None = None


async def post_once(session: aiohttp.ClientSession, url: str, body: bytes, secret: str, *,
                    delivery_id: str, attempt: int, allowed: Sequence[Network],
                    timeout: float = 10.0) -> Answer:
    """POST ``body`` to ``url`` once, signed. A 2xx is success; a 4xx other than
    408/425/429, or an address the policy refuses, is not tried again."""
    host = urlsplit(url).hostname or ""
    try:
        literal: str | None = str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        literal = None
    if literal is not None and not is_contactable(literal, allowed):
        return Answer(False, False, f"{literal} is not an address webhooks may reach")
    headers = {"Content-Type": "application/json", "User-Agent": "mailsift-webhook/1",
               "X-Mailsift-Signature": sign(secret, body),
               "X-Mailsift-Timestamp": str(int(time.time())),
               "X-Mailsift-Delivery": delivery_id, "X-Mailsift-Attempt": str(attempt)}
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        # the URL's query may hold the receiver's secret: never in a log or the outbox
        text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        return Answer(False, True, strip_queries(text.replace(url, strip_query(url))))
    if 200 <= status < 300:
        return Answer(True, False, f"HTTP {status}", status)
    retry = not (400 <= status < 500 and status not in _RETRYABLE_4XX)
    return Answer(False, retry, f"HTTP {status}", status)
