"""A simulated mail world for tests: an authoritative DNS server and scripted SMTP hosts.

Everything binds to loopback addresses only (DNS ``127.0.2.1``, MX hosts ``127.0.1.X``,
bulk MX hosts ``127.0.3.X``), under the reserved TLD ``.test``.

In-process::

    from tests.world import World, default_world

    async with World(default_world(greylist_seconds=1)) as world:
        world.nameserver          # "127.0.2.1:PORT" (MAILSIFT_DNS_NAMESERVERS format)
        world.smtp_port           # one port for every MX host
        world.stats()             # JSON-able counters
        world.data_commands       # DATA/BDAT received world-wide (must stay 0)

As a process: ``python -m tests.world [--bulk N] [--latency-ms 20]`` prints one JSON
line (nameserver, smtp_port, control URL) and serves until SIGTERM/SIGINT.

Modules: :mod:`.spec` (data model), :mod:`.dns_server`, :mod:`.smtp_server`,
:mod:`.runner` (:class:`World`), :mod:`.default` (default and bulk worlds),
:mod:`.control` (HTTP control API), :mod:`.__main__` (subprocess entry point).
"""

from __future__ import annotations

from .default import ADDRESSES, STANDARD_MAILBOXES, bulk_world, default_world
from .dns_server import DnsServer, DnsStats
from .runner import World
from .smtp_server import MxStats, SmtpFleet, SmtpServer, max_rate
from .spec import MxHost, Record, Reply, WorldSpec, a, aaaa, mailboxes, merge, mx, txt

__all__ = [
    "ADDRESSES",
    "STANDARD_MAILBOXES",
    "DnsServer",
    "DnsStats",
    "MxHost",
    "MxStats",
    "Record",
    "Reply",
    "SmtpFleet",
    "SmtpServer",
    "World",
    "WorldSpec",
    "a",
    "aaaa",
    "bulk_world",
    "default_world",
    "mailboxes",
    "max_rate",
    "merge",
    "mx",
    "txt",
]
