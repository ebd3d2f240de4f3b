"""The engine's configuration, independent of where it comes from.

>>> EngineConfig().smtp_port
25

``mailsift.compose.engine_config`` builds one from the ``MAILSIFT_*`` settings: the engine
knows nothing of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    #: queries in flight at once (more wait their turn)
    dns_concurrency: int = 100
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
    #: probes of domains with the same MX hosts share a transaction while they are busy
    smtp_merge_domains: bool = True
    mx_backoff_min: float = 30.0
    mx_backoff_max: float = 900.0
    rcpt_per_transaction: int = 20
    mx_max_connections: int = 2
    mx_rcpt_per_second: float = 5.0
    catch_all_ttl: float = 86400.0
    check_auth_records: bool = True
    allow_test_tld: bool = False
    domain_concurrency: int = 50
    #: provider name (:data:`checks.provider.PROVIDERS`) → its policy
    providers: Mapping[str, ProviderPolicy] = field(default_factory=dict)
