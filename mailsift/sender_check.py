"""Does the probe's sender (``MAILSIFT_MAIL_FROM``) have a domain that resolves?

Many servers refuse a MAIL FROM whose domain has no MX or A record (Postfix's
``reject_unknown_sender_domain``): every probe to them then ends as ``sender_rejected``.
``mailsift config`` asks this before a user runs a job. Lookups go to the configured
nameservers; names that can never resolve on the public DNS (RFC 2606 / 6761:
``.invalid``, ``.example``, ``.localhost``) are not asked at all.

>>> reserved_domain("mailsift.invalid"), reserved_domain("example.com")
(True, False)
"""

from __future__ import annotations

import asyncio

from checks.dns import DnsFailure, NoData, NxDomain
from mailsift.resolver import resolver_for
from mailsift.settings import Settings

__all__ = ["sender_warning", "reserved_domain"]

_NEVER_RESOLVE = ("invalid", "example", "localhost")


def reserved_domain(domain: str) -> bool:
    """Whether ``domain`` is under a TLD that never resolves on the public DNS."""
    return domain.rstrip(".").lower().rpartition(".")[2] in _NEVER_RESOLVE


async def _resolves(settings: Settings, domain: str) -> bool | None:
    """True when ``domain`` has an MX, A or AAAA record, False when it has none, None when
    the lookups failed (timeout, SERVFAIL)."""
    resolver = resolver_for(settings)
    failed = False
    for rdtype in ("MX", "A", "AAAA"):
        try:
            await resolver.query(domain, rdtype)
        except (NxDomain, NoData):
            continue
        except (DnsFailure, OSError):
            failed = True
            continue
        return True
    return None if failed else False


def sender_warning(settings: Settings) -> str | None:
    """One line saying why the probe's sender will be refused, or None when it is fine
    (or the null sender ``<>``)."""
    sender = settings.mail_from
    if not sender:
        return None
    domain = sender.rpartition("@")[2]
    if not reserved_domain(domain):
        found = asyncio.run(_resolves(settings, domain))
        if found:
            return None
        if found is None:  # say so rather than guess
            return (f"MAILSIFT_MAIL_FROM={sender}: could not look up {domain} (the "
                    "nameservers did not answer); check that it has an MX or A record")
    return (f"MAILSIFT_MAIL_FROM={sender}: {domain} does not resolve (no MX or A record), "
            "so servers that check the sender will refuse every probe (reason "
            "sender_rejected); set it to an address at a domain of yours")
