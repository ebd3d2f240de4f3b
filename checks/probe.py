"""The polite SMTP probe: ask an MX whether mailboxes exist, without ever sending mail.

One :meth:`SmtpProber.probe` call checks many addresses of one domain (or of several
domains with the same MX hosts: :mod:`checks.coalesce` merges them). It borrows a
session to the MX addresses in preference order from the :class:`~checks.pool.MxPool`
(moving on when one cannot be reached or is backing off), opens a MAIL transaction
(``RSET`` first when the session carried an earlier group), sends the ``RCPT TO``
commands and gives the session back for the next group, whatever domain that is.

* With RFC 2920 ``PIPELINING`` advertised, the RCPTs whose permits are due together go in
  one write and their replies are matched in order; without it, lock-step.
* RCPT permits are reserved a group at a time
  (:meth:`~checks.politeness.Politeness.reserve_rcpts`, one Redis round trip) and each
  group waits for its permit time. At the rates that send one RCPT per permit (below
  about 20 per second, the defaults), a permit that came too late to be used (more than
  ``LATE_LIMIT`` behind: another worker may send the next ones on time) is given up and a
  new one reserved, which takes the given-up one back when nobody reserved after it; at
  grouped rates each process spaces its own sends instead (:meth:`SmtpProber._pace`).
  Lock-step, the transaction is open before its permits are reserved.
* At most ``rcpt_per_transaction`` recipients per transaction, then ``RSET``.
* A server that refuses more recipients (452 4.5.3) is asked again in a new transaction
  on the same connection; if that one is answered, the limit was per transaction and the
  pool remembers it for the host (one RCPT per transaction for consumer Outlook), else it
  was per connection and the rest is asked on a new connection. A 421 mid-session is
  asked again on a new connection; a session that an idle server closed meanwhile is
  replaced quietly.

It never sends ``DATA`` or ``BDAT`` — the transport cannot even express them.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from checks.model import MxResult, RcptResult, Reason, ReplyClass, SmtpReply
from checks.netpolicy import is_contactable
from checks.politeness import GridSpan, Politeness, RcptPermits
from checks.pool import HostBackoff, MxPool, PoolConfig, PooledSession, SessionRefused
from checks.replies import classify
from checks.smtp import SmtpConnector, SmtpTransportError

__all__ = ["ProbeConfig", "ProbeReport", "SmtpProber"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: permits due within this many seconds of each other go out in one pipelined write (the
#: politeness policy gives the permits of one group the same time)
_SAME_GROUP = 0.001
#: hosts whose last send time is kept before the past ones are forgotten
_MAX_PACED_HOSTS = 10_000
#: classes that speak of a mailbox: said to MAIL FROM, they speak of our sender
_MAILBOX_CLASSES = frozenset({ReplyClass.MAILBOX_NOT_FOUND, ReplyClass.MAILBOX_DISABLED,
                              ReplyClass.MAILBOX_FULL})


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
    pipelining: bool = True


@dataclass
class ProbeReport:
    """Per-recipient outcomes of one probe, keyed by the recipient string given."""

    results: dict[str, RcptResult] = field(default_factory=dict)
    #: new connections this probe opened (sessions borrowed from the pool do not count)
    connections: int = 0


class _Next(enum.Enum):
    DONE = "done"
    RECONNECT = "reconnect"  # same host again (452 too many recipients, 421 mid-session)
    STALE = "stale"  # a pooled session was closed by the server meanwhile: quietly again
    NEXT_HOST = "next_host"  # this address failed: try the next MX address
    ABORT = "abort"  # the probe's time is up


class SmtpProber:
    """Runs probes through an :class:`~checks.pool.MxPool` under a politeness policy."""

    def __init__(self, connector: SmtpConnector, politeness: Politeness,
                 config: ProbeConfig, *, pool: MxPool | None = None,
                 max_connections: int = 2) -> None:
        self.politeness = politeness
        self.config = config
        #: RCPT permits not used because they came too late (new ones were reserved)
        self.late_permits = 0
        #: per MX address, at grouped rates: the time before which this process sends it
        #: no RCPT (the actual send of its previous group plus that group's grid time)
        self._quiet_until: dict[str, float] = {}
        self.pool = pool or MxPool(connector, politeness, PoolConfig(
            port=config.port, helo_name=config.helo_name, max_connections=max_connections))

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
        index, reconnects, stale = 0, 0, 0
        while pending and index < len(allowed):
            host, ip = allowed[index]
            step, failure = await self._session(host, ip, pending, report, failure)
            if step is _Next.NEXT_HOST:
                index += 1
            elif step is _Next.RECONNECT:
                reconnects += 1
                if reconnects > self.config.max_reconnects:
                    break
            elif step is _Next.STALE:
                stale += 1
                if stale > self.pool.max_connections(ip):
                    index += 1
            elif step is _Next.ABORT:
                break
        return self._finish(report, pending, failure)

    async def _pace(self, ip: str, permits: RcptPermits, index: int, count: int) -> bool:
        """Wait until permit ``index`` (the first of ``count`` sent together) is due; False
        (and nothing is to be sent) when it came too late to be used.

        Permits are exact, but a command sent late (a busy event loop, a slow Redis
        answer) would bunch up with the next ones, which another worker may send on time,
        and a server counting any rolling second could see one RCPT more than the rate.

        * At rates that send one RCPT per permit (below about 20 per second: the
          defaults), a permit that may be more than ``LATE_LIMIT`` behind its place is
          given up (with the rest of its reservation) and the caller reserves new ones.
        * At rates whose permits go in pipelined groups, the worker is often busy enough
          that most permits would be given up that way (in a benchmark at 200 RCPT/s,
          more than one per RCPT sent). There the process spaces its own sends instead:
          the next send to a host is no sooner than this process's previous *actual* send
          plus the grid time its group used, so lateness delays what follows rather than
          crowding it. (Another worker's groups can still come closer than the grid.)
        """
        grouped = self.politeness.rcpt_group_size(ip) > 1
        quiet = self._quiet_until.get(ip, 0.0) if grouped else 0.0
        while (delay := max(permits.due[index], quiet) - time.monotonic()) > 0:
            await asyncio.sleep(delay)  # the loop's timers may wake a little early
            quiet = self._quiet_until.get(ip, 0.0) if grouped else 0.0
        now = time.monotonic()
        if not grouped:
            return not permits.late(index, now)
        if len(self._quiet_until) > _MAX_PACED_HOSTS:
            self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
        self._quiet_until[ip] = now + count * self.politeness.rcpt_interval(ip)
        return True

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
        """One borrowed session to ``ip``; consumes ``pending`` as answers arrive."""
        try:
            ps = await self.pool.acquire(host, ip)
        except HostBackoff as exc:
            return _Next.NEXT_HOST, self._open_failure(exc.cause, host, ip, note=str(exc))
        except (SmtpTransportError, SessionRefused) as exc:
            report.connections += 1
            return _Next.NEXT_HOST, self._open_failure(exc, host, ip)
        if not ps.reused:
            report.connections += 1
        reuse = False
        answered = ps.rcpts
        try:
            async with asyncio.timeout(self.config.session_timeout):
                step, outcome = await self._converse(ps, host, ip, pending, report)
            reuse = step is _Next.DONE
            return step, outcome
        except TimeoutError:
            expired = SmtpTransportError(
                Reason.TIMEOUT, f"SMTP session exceeded {self.config.session_timeout:g}s")
            self.pool.failed(ip, expired)
            return _Next.ABORT, RcptResult(None, None, Reason.TIMEOUT, mx_host=host,
                                           mx_address=ip, error=str(expired))
        except SmtpTransportError as exc:
            if ps.slot_lost:  # we dropped it (its slot vanished): ask again on a new one
                return _Next.RECONNECT, self._transport_failure(exc, host, ip)
            if ps.reused and ps.rcpts == answered and exc.reason is not Reason.TIMEOUT:
                return _Next.STALE, failure  # closed by the server while idle in the pool
            if exc.reason is Reason.TIMEOUT:
                self.pool.failed(ip, exc)
            return _Next.NEXT_HOST, self._transport_failure(exc, host, ip)
        finally:
            await self.pool.release(ps, reuse=reuse)

    async def _converse(
        self, ps: PooledSession, host: str, ip: str, pending: deque[str],
        report: ProbeReport,
    ) -> tuple[_Next, RcptResult]:
        session = ps.session

        def result(reply: SmtpReply, cls: ReplyClass | None = None) -> RcptResult:
            return RcptResult(reply, cls or classify(reply), mx_host=host, mx_address=ip)

        smtputf8 = any(not r.isascii() for r in pending)
        if smtputf8 and not session.supports("smtputf8"):
            # such mailboxes cannot be addressed on this server at all
            for rcpt in [r for r in pending if not r.isascii()]:
                pending.remove(rcpt)
                report.results[rcpt] = result(
                    SmtpReply(553, "server does not support SMTPUTF8", "5.6.7"),
                    ReplyClass.PERMANENT)
            smtputf8 = False

        pipelining = self.config.pipelining and session.supports("pipelining")
        in_transaction, sent = False, 0
        #: recipients a transaction took before a 452 4.5.3: a limit per transaction if a
        #: new transaction on this connection is answered, else one per connection
        suspect: int | None = None
        unused: GridSpan | None = None  # permits that came too late, to give back
        while pending:
            new_transaction = False  # a 452 4.5.3 asks for a new one after this chunk
            most = self.config.rcpt_per_transaction
            # while a limit is suspected, the new transaction asks no more than it
            per_transaction = min(most, self.pool.transaction_limit(ip) or most,
                                  suspect or most)
            if in_transaction and sent >= per_transaction:  # (a limit learned meanwhile)
                in_transaction = False
            if not in_transaction and not pipelining:
                # lock-step: the transaction is open before the permits are reserved, so
                # the MAIL round trip never makes a RCPT late
                if ps.dirty:
                    await session.rset()
                ps.dirty = True
                refused = self._mail_refused(
                    await session.mail_from(self.config.mail_from, smtputf8=smtputf8),
                    host, ip, pending, report)
                if refused is not None:
                    return refused
                in_transaction, sent = True, 0
                ps.transactions += 1
            room = per_transaction - (sent if in_transaction else 0)
            chunk = [pending[i] for i in range(min(len(pending), room,
                                                   self.politeness.rcpt_group_size(ip)))]
            permits = await self.politeness.reserve_rcpts(ip, len(chunk), unused=unused)
            unused = None
            i = 0
            while i < len(chunk) and pending:
                j = i + 1
                if pipelining:
                    while j < len(chunk) and permits.due[j] <= permits.due[i] + _SAME_GROUP:
                        j += 1
                if not await self._pace(ip, permits, i, j - i):
                    self.late_permits += len(chunk) - i
                    unused = permits.unused(i)
                    break  # the rest of the chunk gets new permits, these go back
                group = chunk[i:j]
                replies: list[SmtpReply] | None = None
                if not in_transaction:
                    # RSET, MAIL FROM and the first recipients in one round trip
                    mail, replies = await session.transaction(
                        self.config.mail_from, group, reset=ps.dirty, smtputf8=smtputf8)
                    ps.dirty = True
                    refused = self._mail_refused(mail, host, ip, pending, report)
                    if refused is not None:
                        return refused
                    in_transaction, sent = True, 0
                    ps.transactions += 1
                if replies is None:
                    replies = (await session.rcpt_many(group) if len(group) > 1
                               else [await session.rcpt_to(group[0])])
                for rcpt, reply in zip(group, replies, strict=True):
                    ps.rcpts += 1
                    cls = classify(reply)
                    if cls is ReplyClass.TOO_MANY_RECIPIENTS and ps.rcpts > 1:
                        if sent > 0 and suspect is None:
                            # no more in this transaction: RSET and a new one tells
                            # whether the limit is per transaction or per connection
                            suspect, new_transaction = sent, True
                            break
                        return _Next.RECONNECT, result(reply, ReplyClass.TEMPORARY)
                    if reply.code == 421:  # the server is closing: ask again on a new one
                        return _Next.RECONNECT, result(reply, ReplyClass.TEMPORARY)
                    if suspect is not None and sent == 0 and reply.code < 400:
                        # the new transaction's first recipient was answered: the limit
                        # is per transaction
                        self.pool.learn_transaction_limit(ip, suspect)
                        suspect = None
                    report.results[rcpt] = (self._refused(reply, cls, host, ip)
                                            if cls is ReplyClass.SENDER_REJECTED
                                            else result(reply, cls))
                    pending.popleft()
                    sent += 1
                if new_transaction:
                    break
                i = j
            if new_transaction or (sent >= per_transaction and pending):
                in_transaction = False
        return _Next.DONE, RcptResult(None, None, None)

    def _mail_refused(self, mail: SmtpReply, host: str, ip: str, pending: deque[str],
                      report: ProbeReport) -> tuple[_Next, RcptResult] | None:
        """What to do when the server did not take our ``MAIL FROM`` (None: it did)."""
        if mail.code < 400:
            return None
        cls = classify(mail)
        if cls in _MAILBOX_CLASSES:
            # a MAIL reply is about our sender, never the recipient: a refusal if
            # permanent, else the server's passing trouble
            cls = ReplyClass.SENDER_REJECTED if mail.code >= 500 else ReplyClass.TEMPORARY
        if mail.code >= 500 or cls is ReplyClass.SENDER_REJECTED:
            # a sender refusal applies to every recipient on this server (and on the
            # next: it is our sender that is refused)
            refused = self._refused(mail, cls, host, ip)
            for rcpt in pending:
                report.results[rcpt] = refused
            pending.clear()
            return _Next.DONE, refused
        return _Next.NEXT_HOST, RcptResult(mail, cls, mx_host=host, mx_address=ip)

    def _refused(self, reply: SmtpReply, cls: ReplyClass, host: str, ip: str) -> RcptResult:
        """The outcome of a refused sender, with what to do about it."""
        error = None
        if cls is ReplyClass.SENDER_REJECTED:
            error = (f"the server refused the probe's sender <{self.config.mail_from}>, not "
                     "the recipient: set MAILSIFT_MAIL_FROM to an address at a domain that "
                     "resolves (with an MX or A record)")
        return RcptResult(reply, cls, mx_host=host, mx_address=ip, error=error)

    def _open_failure(self, exc: SmtpTransportError | SessionRefused, host: str, ip: str,
                      note: str | None = None) -> RcptResult:
        if isinstance(exc, SessionRefused):
            return RcptResult(exc.reply, classify(exc.reply), mx_host=host, mx_address=ip,
                              error=note)
        outcome = self._transport_failure(exc, host, ip)
        if note is None:
            return outcome
        return RcptResult(outcome.reply, outcome.reply_class, outcome.reason, host, ip, note)

    @staticmethod
    def _transport_failure(exc: SmtpTransportError, host: str, ip: str) -> RcptResult:
        if exc.reply is not None:
            cls = classify(exc.reply)
            if cls in {ReplyClass.ACCEPTED, ReplyClass.PERMANENT}:
                cls = ReplyClass.BLOCKED if exc.reply.code >= 500 else ReplyClass.TEMPORARY
            return RcptResult(exc.reply, cls, mx_host=host, mx_address=ip, error=str(exc))
        return RcptResult(None, None, exc.reason, mx_host=host, mx_address=ip, error=str(exc))
