"""The engine's configuration, independent of where it comes from.

>>> EngineConfig().smtp_port
25
>>> from mailsift.settings import load_settings
>>> EngineConfig.from_settings(load_settings({"MAILSIFT_SMTP_PORT": "2525"})).smtp_port
2525
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.provider import PROVIDERS

if TYPE_CHECKING:
    from mailsift.settings import Settings

__all__ = ["EngineConfig", "ProviderPolicy"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProviderPolicy:
    """A mailbox provider's own limits for its MX hosts (None: the per-MX default), and
    whether its domains get the catch-all probe."""

    max_connections: int | None = None
    rcpt_per_second: float | None = None
    catch_all_probe: bool = True


@dataclass(frozen=True)
class EngineConfig:
    """Everything :class:`checks.engine.Engine` needs; defaults are production-safe."""

    nameservers: tuple[tuple[str, int], ...] = ()  # empty: the system resolver's
    dns_timeout: float = 3.0
    dns_min_ttl: float = 60.0
    dns_max_ttl: float = 86400.0
    dns_negative_ttl: float = 300.0
    smtp_port: int = 25
    helo_name: str = "verify.mailsift.invalid"
    mail_from: str = "verify@mailsift.invalid"
    allowed_networks: tuple[Network, ...] = ()
    connect_timeout: float = 10.0
    command_timeout: float = 15.0
    session_timeout: float = 120.0
    smtp_idle_seconds: float = 1.0
    smtp_pipelining: bool = True
    mx_backoff_min: float = 30.0
    mx_backoff_max: float = 900.0
    rcpt_per_transaction: int = 20
    mx_max_connections: int = 2
    mx_rcpt_per_second: float = 5.0
    catch_all_ttl: float = 86400.0
    check_auth_records: bool = True
    allow_test_tld: bool = False
    domain_concurrency: int = 50
    #: provider name (``checks.provider.PROVIDERS``) → its policy
    providers: Mapping[str, ProviderPolicy] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            nameservers=tuple((ns.host, ns.port) for ns in settings.dns_nameservers),
            dns_timeout=settings.dns_timeout,
            dns_min_ttl=settings.dns_min_ttl,
            dns_max_ttl=settings.dns_max_ttl,
            dns_negative_ttl=settings.dns_negative_ttl,
            smtp_port=settings.smtp_port,
            helo_name=settings.helo_name,
            mail_from=settings.mail_from,
            allowed_networks=settings.mx_allowed_networks,
            connect_timeout=settings.smtp_connect_timeout,
            command_timeout=settings.smtp_command_timeout,
            session_timeout=settings.smtp_session_timeout,
            smtp_idle_seconds=settings.smtp_idle_seconds,
            smtp_pipelining=settings.smtp_pipelining,
            mx_backoff_min=settings.mx_backoff_seconds,
            mx_backoff_max=max(settings.mx_backoff_seconds, settings.mx_backoff_max_seconds),
            mx_max_connections=settings.mx_max_connections,
            mx_rcpt_per_second=settings.mx_max_rcpt_per_second,
            allow_test_tld=settings.allow_test_tld,
            providers=_providers(settings),
        )


def _providers(settings: Settings) -> dict[str, ProviderPolicy]:
    """``MAILSIFT_PROVIDER_LIMITS`` as policies; a provider we do not know is an error
    (a typo would silently apply nothing)."""
    # the settings module is a leaf: the names it cannot know are checked here
    from mailsift.settings import SettingsError

    out = {}
    for p in settings.provider_limits:
        if p.provider not in PROVIDERS:
            raise SettingsError(f"MAILSIFT_PROVIDER_LIMITS: unknown provider {p.provider!r} "
                                f"(known: {', '.join(sorted(PROVIDERS))})")
        out[p.provider] = ProviderPolicy(p.max_connections, p.rcpt_per_second,
                                         p.catch_all_probe)
    return out
