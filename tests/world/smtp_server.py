"""Scripted SMTP servers (one per MX host) written on asyncio streams.

Each :class:`SmtpServer` listens on one loopback address; :class:`SmtpFleet` starts all
the hosts of a spec on the *same* port (``port=0`` lets the first listener pick it and
the others reuse it, retrying on a clash).

Supported commands: EHLO, HELO, STARTTLS, MAIL, RCPT, RSET, NOOP, VRFY (252), HELP,
QUIT. DATA and BDAT are counted and always refused with ``554 5.7.1`` (a verifier must
never send them; tests assert the counter stays 0). Lines over 1000 bytes (CRLF
included) get ``500 5.5.2``. Replies carry enhanced status codes.

Counting rules (:class:`MxStats`): every MAIL and RCPT command received is counted (and
every RCPT timestamped with the ``time.monotonic()`` of its arrival: commands pipelined in
one write share it), whatever its reply; connections
refused with 421 by ``max_connections`` still count as connections (and in the
simultaneous maximum), plus in ``rejected_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .spec import CERT_FILE, KEY_FILE, MxHost, Reply

__all__ = ["MxStats", "SmtpFleet", "SmtpServer", "max_rate", "server_ssl_context"]

log = logging.getLogger(__name__)

MAX_LINE = 1000
"""Longest accepted command line in bytes, CRLF included (RFC 5321 text line limit)."""

_STREAM_LIMIT = 64 * 1024
_MAX_BDAT = 10 * 1024 * 1024
_MAX_BIND_ATTEMPTS = 20
_ADDR_RE = re.compile(r"^\s*<([^<>]*)>(?:\s+(.*))?$")


def server_ssl_context() -> ssl.SSLContext:
    """TLS server context with the shipped self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT_FILE, KEY_FILE)
    return ctx


def max_rate(times: list[float], window: float = 1.0) -> int:
    """Largest number of ``times`` inside any half-open interval of length ``window``."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class MxStats:
    """Counters of one MX host (see the module docstring for what counts)."""

    connections: int = 0
    current_connections: int = 0
    max_simultaneous: int = 0
    rejected_connections: int = 0
    starttls: int = 0
    mail: int = 0
    rcpt: int = 0
    rcpt_times: list[float] = field(default_factory=list)
    rcpt_replies: Counter[int] = field(default_factory=Counter)
    tls_failures: int = 0  # STARTTLS accepted, then the handshake broken (tls_broken)
    data: int = 0

    def max_rcpt_rate(self, window: float = 1.0) -> int:
        """Most RCPT commands seen in any ``window``-second interval."""
        return max_rate(self.rcpt_times, window)

    def reset(self) -> None:
        """Zero the counters; the simultaneous maximum restarts at the current count."""
        current = self.current_connections
        fresh = MxStats(current_connections=current, max_simultaneous=current)
        self.__dict__.update(fresh.__dict__)

    def as_dict(self, *, include_times: bool = False) -> dict[str, Any]:
        """JSON-able view (RCPT timestamps only when ``include_times``)."""
        out: dict[str, Any] = {
            "connections": self.connections,
            "current_connections": self.current_connections,
            "max_simultaneous": self.max_simultaneous,
            "rejected_connections": self.rejected_connections,
            "starttls": self.starttls,
            "mail": self.mail,
            "rcpt": self.rcpt,
            "rcpt_replies": {str(k): v for k, v in sorted(self.rcpt_replies.items())},
            "max_rcpt_per_second": self.max_rcpt_rate(1.0),
            "data": self.data,
        }
        if include_times:
            out["rcpt_times"] = list(self.rcpt_times)
        return out


@dataclass
class _Session:
    """State of one SMTP connection."""

    peer: str
    greeted: bool = False
    tls: bool = False
    blocked: bool = False
    mail_from: str | None = None
    rcpts: list[str] = field(default_factory=list)
    rcpt_count: int = 0  # RCPTs counted against max_rcpt_per_session
    transaction_rcpts: int = 0  # RCPTs of the current transaction (rcpt_per_transaction)
    #: when the write holding the current command arrived (pipelined commands share it)
    arrived: float = 0.0

    def reset_transaction(self) -> None:
        self.mail_from = None
        self.rcpts.clear()
        self.transaction_rcpts = 0


class _Close(Exception):
    """Raised by a command handler to end the session after its reply."""


class SmtpServer:
    """One scripted MX host listening on ``host.address:port``."""

    def __init__(
        self,
        host: MxHost,
        *,
        latency: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.latency = latency
        self.ssl_context = ssl_context if host.tls else None
        self.stats = MxStats()
        self.port: int | None = None
        self._greylist: dict[str, float] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def name(self) -> str:
        """The host's DNS name."""
        return self.host.hostname

    def reset_greylist(self) -> None:
        """Forget every greylist first-seen time."""
        self._greylist.clear()

    async def start(self, port: int) -> int:
        """Listen (unless ``listening`` is false) and return the bound port."""
        if not self.host.listening:
            self.port = port
            return port
        self._server = await asyncio.start_server(
            self._handle, self.host.address, port, limit=_STREAM_LIMIT
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for the handlers."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    # --- connection handling -------------------------------------------------------

    async def _send(
        self, writer: asyncio.StreamWriter, text: str, delay: float, due: float | None = None
    ) -> None:
        """Write a reply (``text`` may hold several ``\\n``-separated lines).

        ``due`` (monotonic) is when the world latency has passed for the command this
        answers; without it the whole latency is waited now (the banner).
        """
        latency = self.latency if due is None else max(0.0, due - time.monotonic())
        total = latency + delay
        if total > 0:
            await asyncio.sleep(total)
        writer.write(text.replace("\n", "\r\n").encode() + b"\r\n")
        await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        stats = self.stats
        stats.connections += 1
        stats.current_connections += 1
        stats.max_simultaneous = max(stats.max_simultaneous, stats.current_connections)
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        try:
            await self._session(reader, writer, peer)
        except (
            ConnectionError,
            asyncio.CancelledError,
            asyncio.IncompleteReadError,
            ssl.SSLError,
            _Close,
        ):
            pass
        except Exception:  # pragma: no cover - a bug in the fake must be visible
            log.exception("SMTP handler crashed on %s", self.host.hostname)
        finally:
            stats.current_connections -= 1
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        host = self.host
        limit = host.max_connections
        if limit is not None and self.stats.current_connections > limit:
            self.stats.rejected_connections += 1
            await self._send(writer, "421 4.7.0 Too many connections, try later", 0)
            return
        session = _Session(peer)
        if host.blocked == "banner":
            session.blocked = True
            await self._send(writer, self._blocked_text(peer), host.banner_delay)
        else:
            await self._send(writer, f"220 {host.hostname} ESMTP mailsift-world", host.banner_delay)
        arrived = time.monotonic()
        while True:
            # The world's latency is network round-trip time: a command that was already
            # buffered (pipelined with the one before, RFC 2920) arrived with it, so its
            # reply is due at the same time, not one more latency later.
            buffered = b"\n" in getattr(reader, "_buffer", b"")
            try:
                line = await asyncio.wait_for(reader.readline(), host.idle_timeout)
            except TimeoutError:
                await self._send(writer, "421 4.4.2 Idle timeout, closing connection", 0)
                return
            except ValueError:  # longer than the stream limit
                await self._send(writer, "500 5.5.2 Line too long", host.reply_delay)
                return
            if not line:
                return
            if not buffered:
                arrived = time.monotonic()
            due = arrived + self.latency
            session.arrived = arrived
            if len(line) > MAX_LINE:
                await self._send(writer, "500 5.5.2 Line too long", host.reply_delay)
                continue
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            try:
                reply = await self._command(verb.upper(), arg.strip(), session, reader, writer)
            except _Close as close:
                await self._send(writer, str(close), host.reply_delay, due)
                raise
            if reply is not None:
                await self._send(writer, reply, host.reply_delay, due)

    def _blocked_text(self, peer: str) -> str:
        return f"554 5.7.1 Service unavailable; client host [{peer}] blocked using zen.spamhaus.org"

    async def _command(
        self,
        verb: str,
        arg: str,
        s: _Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> str | None:
        """Handle one command; return the reply text (``None`` = already replied)."""
        host = self.host
        if verb == "QUIT":
            raise _Close("221 2.0.0 Bye")
        if verb in ("DATA", "BDAT"):
            self.stats.data += 1
            if verb == "BDAT":
                size_text = arg.split()[0] if arg.split() else ""
                if not size_text.isdigit() or int(size_text) > _MAX_BDAT:
                    raise _Close("554 5.7.1 BDAT refused by mailsift-world")
                await reader.readexactly(int(size_text))
            return "554 5.7.1 Message content refused: mailsift-world never accepts mail"
        if s.blocked:
            return "503 5.5.1 Bad sequence of commands: only QUIT after a 554 greeting"
        if verb in ("EHLO", "HELO"):
            if not arg:
                return f"501 5.5.4 Syntax: {verb} hostname"
            if verb == "EHLO" and not host.esmtp:
                return "502 5.5.2 Command not recognized (an old HELO-only server)"
            s.greeted = True
            s.reset_transaction()
            if verb == "HELO":
                return f"250 {host.hostname}"
            lines = [
                f"{host.hostname} Hello {arg} [{s.peer}]",
                "SIZE 10240000",
                "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "PIPELINING",
                "SMTPUTF8",
            ]
            if self.ssl_context is not None and not s.tls:
                lines.append("STARTTLS")
            lines.append("HELP")
            return "\n".join(
                f"250{'-' if i < len(lines) - 1 else ' '}{ln}" for i, ln in enumerate(lines)
            )
        if verb == "STARTTLS":
            if self.ssl_context is None:
                return "502 5.5.1 STARTTLS not supported"
            if s.tls:
                return "503 5.5.1 TLS already active"
            if arg:
                return "501 5.5.4 Syntax: STARTTLS"
            await self._send(writer, "220 2.0.0 Ready to start TLS", host.reply_delay)
            if host.tls_broken:
                self.stats.tls_failures += 1
                writer.write(b"this is no TLS record\r\n")
                await writer.drain()
                raise ConnectionError("a broken TLS stack")
            await writer.start_tls(self.ssl_context)
            self.stats.starttls += 1
            s.tls = True
            s.greeted = False
            s.reset_transaction()
            return None
        if verb == "NOOP":
            return "250 2.0.0 OK"
        if verb == "RSET":
            s.reset_transaction()
            if host.rcpt_limit_resets_on_rset:
                s.rcpt_count = 0
            return "250 2.0.0 OK"
        if verb == "VRFY":
            if not arg:
                return "501 5.5.4 Syntax: VRFY address"
            return "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery"
        if verb == "HELP":
            return "214 2.0.0 Commands: EHLO HELO STARTTLS MAIL RCPT RSET NOOP VRFY QUIT"
        if verb == "MAIL":
            return self._mail(arg, s)
        if verb == "RCPT":
            return self._rcpt(arg, s)
        if verb in ("EXPN", "AUTH", "ETRN", "TURN"):
            return f"502 5.5.1 {verb} not implemented"
        return "500 5.5.2 Command unrecognized"

    def _mail(self, arg: str, s: _Session) -> str:
        self.stats.mail += 1
        if not s.greeted:
            return "503 5.5.1 Send EHLO/HELO first"
        if self.host.require_starttls and not s.tls:
            return "530 5.7.0 Must issue a STARTTLS command first"
        if s.mail_from is not None:
            return "503 5.5.1 Nested MAIL command"
        if not arg.upper().startswith("FROM:"):
            return "501 5.5.4 Syntax: MAIL FROM:<address>"
        match = _ADDR_RE.match(arg[5:])
        if match is None:
            return "501 5.5.4 Syntax: MAIL FROM:<address>"
        sender = match.group(1)
        if self.host.sender_check == "mail" and not self.host.sender_resolves(sender):
            return f"553 5.1.8 <{sender}>: Sender address rejected: Domain not found"
        s.mail_from = sender
        s.transaction_rcpts = 0
        return "250 2.1.0 OK"

    def _rcpt(self, arg: str, s: _Session) -> str:
        now = time.monotonic()
        stats = self.stats
        stats.rcpt += 1
        # the moment the server saw it: a RCPT pipelined behind MAIL FROM arrived with it,
        # not when the reply to MAIL FROM (due one latency later) had gone out
        stats.rcpt_times.append(s.arrived or now)
        code, text = self._rcpt_reply(arg, s, now)
        stats.rcpt_replies[code] += 1
        lines = text.split("\n")  # a multi-line reply: "550-…" lines, then "550 …"
        return "\n".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{ln}"
                         for i, ln in enumerate(lines))

    def _rcpt_reply(self, arg: str, s: _Session, now: float) -> tuple[int, str]:
        host = self.host
        if not s.greeted or s.mail_from is None:
            return 503, "5.5.1 Need MAIL before RCPT"
        if not arg.upper().startswith("TO:"):
            return 501, "5.5.4 Syntax: RCPT TO:<address>"
        match = _ADDR_RE.match(arg[3:])
        if match is None or not match.group(1):
            return 501, "5.5.4 Syntax: RCPT TO:<address>"
        address = match.group(1).strip().lower()
        s.rcpt_count += 1
        if host.blocked == "rcpt":
            code, _, text = self._blocked_text(s.peer).partition(" ")
            return int(code), text
        if host.max_rcpt_per_session is not None and s.rcpt_count > host.max_rcpt_per_session:
            return 452, "4.5.3 Too many recipients"
        s.transaction_rcpts += 1
        if (host.rcpt_per_transaction is not None
                and s.transaction_rcpts > host.rcpt_per_transaction):
            return 452, "4.5.3 Too many recipients"
        if host.sender_check == "rcpt" and not host.sender_resolves(s.mail_from):
            return 450, f"4.1.8 <{s.mail_from}>: Sender address rejected: Domain not found"
        if host.greylist_seconds > 0:
            first = self._greylist.setdefault(address, now)
            if now - first < host.greylist_seconds:
                return 451, "4.7.1 Greylisted, try again later"
        reply: Reply = host.reply_for(address)
        if reply is Reply.ACCEPT:
            s.rcpts.append(address)
        return reply.code, reply.line


class SmtpFleet:
    """All MX hosts of a world, sharing one port."""

    def __init__(
        self,
        hosts: list[MxHost],
        *,
        latency: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        ctx = ssl_context if ssl_context is not None else server_ssl_context()
        self.servers: list[SmtpServer] = [
            SmtpServer(h, latency=latency, ssl_context=ctx) for h in hosts
        ]
        self.port: int | None = None

    async def start(self, port: int = 0) -> int:
        """Start every listening host on ``port`` (0 = pick one) and return it."""
        attempts = _MAX_BIND_ATTEMPTS if port == 0 else 1
        last_error: OSError | None = None
        for _ in range(attempts):
            chosen = port
            started: list[SmtpServer] = []
            try:
                for server in sorted(self.servers, key=lambda s: not s.host.listening):
                    if chosen == 0 and not server.host.listening:
                        chosen = _free_port()
                    chosen = await server.start(chosen)
                    started.append(server)
            except OSError as exc:
                last_error = exc
                for server in started:
                    await server.stop()
                continue
            self.port = chosen
            return chosen
        raise OSError(f"could not bind the SMTP hosts on one port: {last_error}")

    async def stop(self) -> None:
        """Stop every host."""
        await asyncio.gather(*(s.stop() for s in self.servers), return_exceptions=True)

    def find(self, key: str) -> SmtpServer:
        """The server whose hostname or address is ``key``."""
        k = key.strip().rstrip(".").lower()
        for server in self.servers:
            if k in (server.host.hostname.lower().rstrip("."), server.host.address):
                return server
        raise KeyError(key)


def _free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (only used when no host listens)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
