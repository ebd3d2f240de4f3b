"""In-memory stand-ins for the engine's I/O interfaces (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from checks.dns import DnsAnswer, NoData, NxDomain
from checks.model import Reason, SmtpReply
from checks.smtp import SmtpSession, SmtpTransportError

__all__ = ["FakeResolver", "FakeServer", "FakeSession", "FakeConnector", "OK", "FakeMessage",
           "FakeEvent", "FakeStream"]

OK = SmtpReply(250, "OK", "2.1.5")


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


class FakeServer:
    """Scripted MX: ``rcpt`` decides each RCPT reply; records every command.

    ``pipelining`` advertises RFC 2920 (a pipelined group is logged as ``GROUP n``);
    ``max_sessions`` answers 421 to a connection arriving while that many are open.
    """

    def __init__(self, rcpt: Callable[[str, int], SmtpReply] = lambda r, n: OK, *,
                 refuse: bool = False, banner: SmtpReply | None = None,
                 starttls: bool = False, mail: SmtpReply | None = None,
                 pipelining: bool = False, max_sessions: int | None = None) -> None:
        self.rcpt, self.refuse, self.banner = rcpt, refuse, banner
        self.starttls_offered, self.mail = starttls, mail
        self.pipelining, self.max_sessions = pipelining, max_sessions
        self.log: list[str] = []
        self.sessions = 0
        self.open = 0


class FakeSession:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.banner = SmtpReply(220, "ready")
        self.tls = False
        self.count = 0
        self.dropped = False

    async def hello(self, name: str) -> SmtpReply:
        self.server.log.append(f"EHLO {name}")
        return SmtpReply(250, "hi")

    def supports(self, extension: str) -> bool:
        if extension == "pipelining":
            return self.server.pipelining
        return extension == "starttls" and self.server.starttls_offered and not self.tls

    @property
    def tls_active(self) -> bool:
        return self.tls

    async def starttls(self, server_hostname: str) -> SmtpReply:
        self.server.log.append("STARTTLS")
        self.tls = True
        return SmtpReply(220, "go ahead")

    async def mail_from(self, sender: str, *, smtputf8: bool = False) -> SmtpReply:
        self._check()
        self.server.log.append(f"MAIL {sender}")
        return self.server.mail or SmtpReply(250, "OK")

    async def rcpt_to(self, recipient: str) -> SmtpReply:
        self._check()
        self.server.log.append(f"RCPT {recipient}")
        self.count += 1
        return self.server.rcpt(recipient, self.count)

    async def rcpt_many(self, recipients: Sequence[str]) -> list[SmtpReply]:
        self.server.log.append(f"GROUP {len(recipients)}")
        return [await self.rcpt_to(r) for r in recipients]

    async def rset(self) -> SmtpReply:
        self._check()
        self.server.log.append("RSET")
        return SmtpReply(250, "OK")

    async def transaction(self, sender: str, recipients: Sequence[str], *, reset: bool,
                          smtputf8: bool = False) -> tuple[SmtpReply, list[SmtpReply]]:
        self.server.log.append(f"PIPELINED {int(reset)}+1+{len(recipients)}")
        if reset:
            await self.rset()
        mail = await self.mail_from(sender, smtputf8=smtputf8)
        if mail.code >= 400:
            return mail, [SmtpReply(503, "need MAIL first", "5.5.1") for _ in recipients]
        return mail, [await self.rcpt_to(r) for r in recipients]

    async def quit(self) -> None:
        if self.dropped:
            return
        self.server.log.append("QUIT")
        self.server.open -= 1

    def abort(self) -> None:
        self.server.log.append("ABORT")
        self.server.open -= 1
        self.dropped = True

    def _check(self) -> None:
        if self.dropped:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, "dropped")


class FakeConnector:
    def __init__(self, servers: dict[str, FakeServer]) -> None:
        self.servers = servers
        self.opened: list[str] = []

    async def open(self, ip: str, port: int) -> SmtpSession:
        self.opened.append(ip)
        server = self.servers[ip]
        if server.refuse:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, "connection refused")
        if server.banner is not None:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, "greeting refused",
                                     server.banner)
        if server.max_sessions is not None and server.open >= server.max_sessions:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, "greeting refused",
                                     SmtpReply(421, "Too many connections", "4.7.0"))
        server.sessions += 1
        server.open += 1
        return FakeSession(server)


# --- a Faust stream, as streams.stage.run_stage reads it ----------------------------------


@dataclass
class FakeMessage:
    offset: int
    value: bytes
    topic: str = "m.submissions"
    partition: int = 0
    key: bytes | None = None

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class FakeEvent:
    """A Faust event whose ack appends its offset to ``acked``."""

    message: FakeMessage
    acked: list[int] = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append(self.message.offset)


class FakeStream:
    def __init__(self, events: list[FakeEvent]) -> None:
        self._events = events

    def noack(self) -> FakeStream:
        return self

    async def events(self) -> AsyncIterator[FakeEvent]:
        for e in self._events:
            yield e
