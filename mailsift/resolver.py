"""The DNS resolver of mailsift's own lookups outside the engine (the sender check, the
webhook URL check): the configured nameservers and timeout, nothing else."""

from __future__ import annotations

from checks.dns import DnspythonResolver
from mailsift.settings import Settings

__all__ = ["resolver_for"]


def resolver_for(settings: Settings) -> DnspythonResolver:
    """A resolver asking ``MAILSIFT_DNS_NAMESERVERS`` within ``MAILSIFT_DNS_TIMEOUT``."""
    return DnspythonResolver([(ns.host, ns.port) for ns in settings.dns_nameservers],
                             timeout=settings.dns_timeout)
