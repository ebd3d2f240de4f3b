"""The polite SMTP probe: ask an MX whether mailboxes exist, without ever sending mail.

One :meth:`SmtpProber.probe` call checks many addresses of one domain: it connects to the
MX addresses in preference order (moving on when one cannot be reached), says EHLO (HELO
as fallback), upgrades with STARTTLS when offered, then sends ``MAIL FROM`` and one
``RCPT TO`` per address, ``RSET`` between groups of recipients, reconnects when the
server refuses more recipients (452 4.5.3) or closes with 421, and ends with ``QUIT``.
It never sends ``DATA`` or ``BDAT`` — the transport cannot even express them.

Every connection holds a slot of :class:`~checks.politeness.Politeness` for its MX
address, and every ``RCPT TO`` waits for the host's rate limit.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from checks.model import MxResult, RcptResult, Reason, ReplyClass, SmtpReply
from checks.netpolicy import is_contactable
from checks.politeness import Politeness
from checks.replies import classify
from checks.smtp import SmtpConnector, SmtpSession, SmtpTransportError

__all__ = ["ProbeConfig", "ProbeReport", "SmtpProber"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProbeConfig:
    """How a probe behaves (see :class:`checks.config.EngineConfig` for the defaults)."""

    port: int = 25
    helo_name: str = "verify.mailsift.invalid"
    mail_from: str = "verify@mailsift.invalid"
    session_timeout: float = 120.0
    allowed_networks: tuple[Network, ...] = ()
    rcpt_per_transaction: int = 20
    max_reconnects: int = 3


@dataclass
class ProbeReport:
    """Per-recipient outcomes of one probe, keyed by the recipient string given."""

    results: dict[str, RcptResult] = field(default_factory=dict)
    connections: int = 0


class _Next(enum.Enum):
    DONE = "done"
    RECONNECT = "reconnect"  # same host again (452 too many recipients, 421 mid-session)
    NEXT_HOST = "next_host"  # this address failed: try the next MX address


class SmtpProber:
    """Runs probes through a :class:`SmtpConnector` under a :class:`Politeness` policy."""

    def __init__(self, connector: SmtpConnector, politeness: Politeness,
                 config: ProbeConfig) -> None:
        self.connector = connector
        self.politeness = politeness
        self.config = config

    async def probe(self, mx: MxResult, recipients: Sequence[str]) -> ProbeReport:
        """Ask the domain's MX about every recipient (``local@ascii-domain`` strings)."""
        report = ProbeReport()
        targets = [(h.host, ip) for h in mx.hosts for ip in h.addresses]
        allowed = [(h, ip) for h, ip in targets
                   if is_contactable(ip, self.config.allowed_networks)]
        pending: deque[str] = deque(dict.fromkeys(recipients))
        if not allowed:
            shown = ", ".join(ip for _, ip in targets[:4]) or "none"
            failure = RcptResult(None, None, Reason.MX_NOT_ALLOWED,
                                 error=f"MX addresses not public and not allowed: {shown}")
            return self._finish(report, pending, failure)

        failure = RcptResult(None, None, Reason.CONNECTION_FAILED, error="no MX answered")
        try:
            async with asyncio.timeout(self.config.session_timeout):
                index, reconnects = 0, 0
                while pending and index < len(allowed):
                    host, ip = allowed[index]
                    step, failure = await self._session(host, ip, pending, report, failure)
                    if step is _Next.NEXT_HOST:
                        index += 1
                    elif step is _Next.RECONNECT:
                        reconnects += 1
                        if reconnects > self.config.max_reconnects:
                            break
        except TimeoutError:
            failure = RcptResult(None, None, Reason.TIMEOUT,
                                 error=f"SMTP session exceeded {self.config.session_timeout}s")
        return self._finish(report, pending, failure)

    @staticmethod
    def _finish(report: ProbeReport, pending: deque[str], failure: RcptResult) -> ProbeReport:
        for rcpt in pending:
            report.results[rcpt] = failure
        pending.clear()
        return report

    async def _session(
        self, host: str, ip: str, pending: deque[str], report: ProbeReport,
        failure: RcptResult,
    ) -> tuple[_Next, RcptResult]:
        """One SMTP session to ``ip``; consumes ``pending`` as answers arrive."""
        async with self.politeness.connection(ip):
            report.connections += 1
            try:
                session = await self.connector.open(ip, self.config.port)
            except SmtpTransportError as exc:
                return _Next.NEXT_HOST, self._transport_failure(exc, host, ip)
            try:
                return await self._converse(session, host, ip, pending, report)
            except SmtpTransportError as exc:
                return _Next.NEXT_HOST, self._transport_failure(exc, host, ip)
            finally:
                await session.quit()

    async def _converse(
        self, session: SmtpSession, host: str, ip: str, pending: deque[str],
        report: ProbeReport,
    ) -> tuple[_Next, RcptResult]:
        def result(reply: SmtpReply, cls: ReplyClass | None = None) -> RcptResult:
            return RcptResult(reply, cls or classify(reply), mx_host=host, mx_address=ip)

        hello = await session.hello(self.config.helo_name)
        if hello.code >= 400:
            return _Next.NEXT_HOST, result(hello)
        if session.supports("starttls") and not session.tls_active:
            tls = await session.starttls(host)
            if tls.code == 220:
                hello = await session.hello(self.config.helo_name)
                if hello.code >= 400:
                    return _Next.NEXT_HOST, result(hello)

        smtputf8 = any(not r.isascii() for r in pending)
        if smtputf8 and not session.supports("smtputf8"):
            # such mailboxes cannot be addressed on this server at all
            for rcpt in [r for r in pending if not r.isascii()]:
                pending.remove(rcpt)
                report.results[rcpt] = result(
                    SmtpReply(553, "server does not support SMTPUTF8", "5.6.7"),
                    ReplyClass.PERMANENT)
            smtputf8 = False

        in_transaction, sent = False, 0
        while pending:
            if not in_transaction:
                mail = await session.mail_from(self.config.mail_from, smtputf8=smtputf8)
                if mail.code >= 400:
                    cls = classify(mail)
                    if mail.code >= 500:
                        # a sender refusal applies to every recipient on this server
                        for rcpt in pending:
                            report.results[rcpt] = result(mail, cls)
                        pending.clear()
                        return _Next.DONE, result(mail, cls)
                    return _Next.NEXT_HOST, result(mail, cls)
                in_transaction, sent = True, 0
            rcpt = pending[0]
            await self.politeness.before_rcpt(ip)
            reply = await session.rcpt_to(rcpt)
            cls = classify(reply)
            if cls is ReplyClass.TOO_MANY_RECIPIENTS and sent > 0:
                return _Next.RECONNECT, result(reply, ReplyClass.TEMPORARY)
            if reply.code == 421:  # the server is closing: ask again on a new connection
                return _Next.RECONNECT, result(reply, ReplyClass.TEMPORARY)
            report.results[rcpt] = result(reply, cls)
            pending.popleft()
            sent += 1
            if sent >= self.config.rcpt_per_transaction and pending:
                await session.rset()
                in_transaction = False
        return _Next.DONE, RcptResult(None, None, None)

    @staticmethod
    def _transport_failure(exc: SmtpTransportError, host: str, ip: str) -> RcptResult:
        if exc.reply is not None:
            cls = classify(exc.reply)
            if cls in {ReplyClass.ACCEPTED, ReplyClass.PERMANENT}:
                cls = ReplyClass.BLOCKED if exc.reply.code >= 500 else ReplyClass.TEMPORARY
            return RcptResult(exc.reply, cls, mx_host=host, mx_address=ip, error=str(exc))
        return RcptResult(None, None, exc.reason, mx_host=host, mx_address=ip, error=str(exc))
