"""In-memory stand-ins for the engine's I/O interfaces (no sockets)."""

from __future__ import annotations

import asyncio

from checks.dns import DnsAnswer, NoData, NxDomain

__all__ = ["FakeResolver"]


class FakeResolver:
    """Answers from a dict ``{(name, rdtype): records | exception}``.

    A name that appears in no key raises NxDomain; a known name without the type raises
    NoData. Every query is logged, and the peak of simultaneous queries is recorded.
    """

    def __init__(self, data: dict[tuple[str, str], list[str] | Exception]) -> None:
        self.data = {(n.lower(), t.upper()): v for (n, t), v in data.items()}
        self.calls: list[tuple[str, str]] = []
        self.inflight = 0
        self.peak = 0

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.calls.append((name, rdtype))
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.inflight -= 1
        key = (name.lower().rstrip("."), rdtype.upper())
        value = self.data.get(key)
        if isinstance(value, Exception):
            raise value
        if value is not None:
            return DnsAnswer(tuple(value), 300)
        if any(n == key[0] for n, _ in self.data):
            raise NoData(f"{name} {rdtype}: no data", ttl=60)
        raise NxDomain(f"{name}: nxdomain", ttl=60)
