"""The :class:`World`: DNS server and SMTP hosts of a spec, started together in-process.

Usage::

    async with World(default_world()) as world:
        settings_env = world.env()   # MAILSIFT_DNS_NAMESERVERS / MAILSIFT_SMTP_PORT
        ...
        assert world.data_commands == 0
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import dns.asyncresolver

from .dns_server import DnsServer
from .smtp_server import MxStats, SmtpFleet, SmtpServer
from .spec import WorldSpec

__all__ = ["World"]


class World:
    """A running simulated mail world (async context manager).

    Args:
        spec: what to serve; ``None`` = :func:`tests.world.default.default_world`.
        dns_host: loopback address of the DNS server.
        dns_port: DNS port (UDP and TCP); 0 = pick a free one.
        smtp_port: port shared by every MX host; 0 = pick a free one.
    """

    def __init__(
        self,
        spec: WorldSpec | None = None,
        *,
        dns_host: str = "127.0.2.1",
        dns_port: int = 0,
        smtp_port: int = 0,
    ) -> None:
        if spec is None:
            from .default import default_world

            spec = default_world()
        spec.validate()
        self.spec = spec
        self.dns = DnsServer(spec, dns_host, dns_port)
        self.smtp = SmtpFleet(spec.mx_hosts, latency=spec.latency)
        self._requested_smtp_port = smtp_port
        self._started = False

    async def start(self) -> None:
        """Start DNS, then the SMTP hosts; on failure nothing stays open."""
        await self.dns.start()
        try:
            await self.smtp.start(self._requested_smtp_port)
        except BaseException:
            await self.dns.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Stop every server and close every connection."""
        await self.smtp.stop()
        await self.dns.stop()
        self._started = False

    async def __aenter__(self) -> World:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- addresses ------------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """``"127.0.2.1:PORT"`` — the format of ``MAILSIFT_DNS_NAMESERVERS``."""
        return self.dns.nameserver

    @property
    def dns_address(self) -> tuple[str, int]:
        """``(host, port)`` of the DNS server."""
        return self.dns.address

    @property
    def smtp_port(self) -> int:
        """The TCP port every MX host listens on."""
        if self.smtp.port is None:
            raise RuntimeError("world not started")
        return self.smtp.port

    def env(self) -> dict[str, str]:
        """Environment for mailsift settings pointing at this world."""
        return {
            "MAILSIFT_DNS_NAMESERVERS": self.nameserver,
            "MAILSIFT_SMTP_PORT": str(self.smtp_port),
        }

    def resolver(self, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
        """A dnspython async resolver that asks only this world's DNS server."""
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = [self.dns.host]
        res.port = self.dns.port
        res.timeout = timeout
        res.lifetime = timeout
        res.cache = None
        return res

    # --- stats ----------------------------------------------------------------------

    def host(self, key: str) -> SmtpServer:
        """The SMTP server of the MX host named ``key`` (hostname or address)."""
        return self.smtp.find(key)

    def mx_stats(self, key: str) -> MxStats:
        """Counters of one MX host (hostname or address)."""
        return self.smtp.find(key).stats

    def max_rcpt_rate(self, key: str, window: float = 1.0) -> int:
        """Most RCPTs one MX host saw in any ``window`` seconds."""
        return self.mx_stats(key).max_rcpt_rate(window)

    def dns_queries(self, qname: str, qtype: str | None = None) -> int:
        """DNS queries seen for ``qname`` (and ``qtype``)."""
        return self.dns.stats.count(qname, qtype)

    @property
    def data_commands(self) -> int:
        """DATA + BDAT commands received by all MX hosts together (must stay 0)."""
        return sum(s.stats.data for s in self.smtp.servers)

    def stats(self, *, include_times: bool = False) -> dict[str, Any]:
        """JSON-able snapshot: addresses, DNS counters, per-MX counters, DATA total."""
        return {
            "nameserver": self.nameserver,
            "smtp_port": self.smtp.port,
            "data_commands": self.data_commands,
            "dns": self.dns.stats.as_dict(),
            "mx": {
                s.host.hostname: {
                    "address": s.host.address,
                    "listening": s.host.listening,
                    **s.stats.as_dict(include_times=include_times),
                }
                for s in self.smtp.servers
            },
        }

    def reset_stats(self) -> None:
        """Zero every DNS and SMTP counter (greylist memory is kept)."""
        self.dns.stats.reset()
        for server in self.smtp.servers:
            server.stats.reset()

    def reset_greylist(self) -> None:
        """Forget greylist first-seen times on every host."""
        for server in self.smtp.servers:
            server.reset_greylist()
