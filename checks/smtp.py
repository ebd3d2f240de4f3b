"""The SMTP transport: a small protocol for one client session, and an asyncio implementation.

The probe logic (:mod:`checks.probe`) only talks to :class:`SmtpConnector` and
:class:`SmtpSession`, so tests can swap the network the way httpx swaps transports.
Sessions connect to an IP address we resolved ourselves (never a host name), and the
protocol offers no way to send ``DATA`` or ``BDAT``: a probe can never send mail.

:class:`StreamSmtpConnector` speaks SMTP over :mod:`asyncio` streams itself. It exists
because a verifier needs RFC 2920 PIPELINING (many ``RCPT TO`` in one write, replies read
in order), which aiosmtplib's protocol cannot do: it drops reply bytes that arrive while
an earlier reply waits to be read. The reply grammar lives in :func:`read_reply` (pure
but for the reader it is given).

>>> import asyncio
>>> async def demo() -> SmtpReply:
...     reader = asyncio.StreamReader()
...     reader.feed_data(b"250-mx.example Hello\\r\\n250-PIPELINING\\r\\n250 SIZE 100\\r\\n")
...     return await read_reply(reader)
>>> asyncio.run(demo()).message
'mx.example Hello PIPELINING SIZE 100'
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Sequence
from typing import Protocol

from checks.model import Reason, SmtpReply
from checks.replies import parse_reply

__all__ = [
    "SmtpTransportError", "SmtpConnector", "SmtpSession", "StreamSmtpConnector",
    "read_reply", "read_reply_lines", "MAX_REPLY_LINES", "TlsFailed",
]

#: a reply of more lines than this is not an SMTP server talking
MAX_REPLY_LINES = 200
_FORBIDDEN = frozenset("\r\n\0<>")


class SmtpTransportError(Exception):
    """The connection failed, timed out or was dropped; ``reason`` says which."""

    def __init__(self, reason: Reason, message: str, reply: SmtpReply | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.reply = reply  # a greeting refusal (e.g. 421/554 banner), when there was one


class TlsFailed(SmtpTransportError):
    """STARTTLS was accepted, but the TLS handshake broke (the connection is gone)."""


class SmtpSession(Protocol):
    """One open SMTP session."""

    banner: SmtpReply

    async def hello(self, name: str) -> SmtpReply:
        """EHLO, falling back to HELO when EHLO is refused."""
        ...

    def supports(self, extension: str) -> bool: ...

    @property
    def tls_active(self) -> bool: ...

    async def starttls(self, server_hostname: str) -> SmtpReply: ...

    async def mail_from(self, sender: str, *, smtputf8: bool = False) -> SmtpReply: ...

    async def rcpt_to(self, recipient: str) -> SmtpReply: ...

    async def rcpt_many(self, recipients: Sequence[str]) -> list[SmtpReply]:
        """RFC 2920: send every ``RCPT TO`` in one write, return the replies in order.

        Only for a server that advertised ``PIPELINING``.
        """
        ...

    async def rset(self) -> SmtpReply: ...

    async def transaction(self, sender: str, recipients: Sequence[str], *, reset: bool,
                          smtputf8: bool = False) -> tuple[SmtpReply, list[SmtpReply]]:
        """RFC 2920: ``[RSET,] MAIL FROM, RCPT TO…`` in one write; the MAIL reply and the
        RCPT replies (the RSET reply is read and dropped). One round trip opens a
        transaction and asks its first recipients. When MAIL is refused, the RCPT replies
        say nothing about the recipients (the server answers them ``503``).

        Only for a server that advertised ``PIPELINING``.
        """
        ...

    async def quit(self) -> None:
        """QUIT politely; never raises."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without QUIT (its connection slot is gone); a
        command waiting for a reply fails with :class:`SmtpTransportError`."""
        ...


class SmtpConnector(Protocol):
    """Opens sessions to ``ip:port``."""

    async def open(self, ip: str, port: int) -> SmtpSession: ...


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Opportunistic STARTTLS for probing: we send no content, so any certificate will do
    (self-signed ones are common on MX hosts). Built once: contexts are costly to make."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def read_reply(reader: asyncio.StreamReader) -> SmtpReply:
    """Read one (possibly multi-line) reply: ``250-a`` … ``250 z`` (lines folded, as
    :func:`~checks.replies.parse_reply` does).

    Raises :class:`SmtpTransportError` when the connection ends or the server talks
    nonsense (a line without a three-digit code).
    """
    code, lines = await read_reply_lines(reader)
    return parse_reply(code, "\n".join(lines))


async def read_reply_lines(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """Like :func:`read_reply`, but the code and the text of each line as sent."""
    lines: list[str] = []
    code = 0
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     "disconnected: the server closed the connection") from None
        except asyncio.LimitOverrunError:
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     "reply line too long") from None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise SmtpTransportError(Reason.CONNECTION_FAILED, f"not an SMTP reply: {line!r}")
        code = int(line[:3])
        lines.append(line[4:])
        if len(line) == 3 or line[3] != "-":
            return code, lines
        if len(lines) >= MAX_REPLY_LINES:  # its rest would be taken for the next replies
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     f"reply of more than {MAX_REPLY_LINES} lines")


def _mail_line(sender: str, smtputf8: bool) -> bytes:
    if any(c in _FORBIDDEN for c in sender):
        raise ValueError("sender contains characters that cannot appear in MAIL FROM")
    return f"MAIL FROM:<{sender}>{' SMTPUTF8' if smtputf8 else ''}\r\n".encode()


def _rcpt_lines(recipients: Sequence[str]) -> bytes:
    for r in recipients:
        if any(c in _FORBIDDEN for c in r):
            raise ValueError("recipient contains characters that cannot appear in RCPT TO")
    return b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in recipients)


class _StreamSession:
    """An SMTP client session over an asyncio stream pair (see :class:`SmtpSession`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 banner: SmtpReply, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self.banner = banner
        self._timeout = timeout
        self._extensions: set[str] = set()
        self._tls = False
        self._closed = False
        self._dropped = False  # by abort(): its slot was lost, the server did nothing

    async def _exchange(self, data: bytes, count: int) -> list[tuple[int, list[str]]]:
        """Write ``data`` (one or more commands), read ``count`` replies in order."""
        if self._closed:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, "disconnected: session closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                self._writer.write(data)
                await self._writer.drain()
                replies = []
                for i in range(count):  # each reply of a pipelined group gets the timeout
                    if i:
                        deadline.reschedule(loop.time() + self._timeout)
                    replies.append(await read_reply_lines(self._reader))
                return replies
        except TimeoutError:
            self._abort()
            raise SmtpTransportError(Reason.TIMEOUT,
                                     f"timed out: no reply within {self._timeout:g}s") from None
        except SmtpTransportError:
            self._abort()
            if self._dropped:
                raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                         "dropped: its connection slot was lost") from None
            raise
        except (OSError, ssl.SSLError) as exc:
            self._abort()
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     f"disconnected: {exc or type(exc).__name__}") from None

    async def _replies(self, data: bytes, count: int) -> list[SmtpReply]:
        return [parse_reply(code, "\n".join(lines))
                for code, lines in await self._exchange(data, count)]

    async def _command(self, line: str) -> SmtpReply:
        return (await self._replies(line.encode("utf-8") + b"\r\n", 1))[0]

    async def hello(self, name: str) -> SmtpReply:
        ((code, lines),) = await self._exchange(f"EHLO {name}\r\n".encode(), 1)
        reply = parse_reply(code, "\n".join(lines))
        if reply.code == 250:
            self._extensions = {ln.split(" ", 1)[0].lower() for ln in lines[1:] if ln}
            return reply
        if reply.code == 421:  # the server is closing
            return reply
        self._extensions = set()
        return await self._command(f"HELO {name}")

    def supports(self, extension: str) -> bool:
        return extension.lower() in self._extensions

    @property
    def tls_active(self) -> bool:
        return self._tls

    async def starttls(self, server_hostname: str) -> SmtpReply:
        reply = await self._command("STARTTLS")
        if reply.code != 220:
            return reply
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.start_tls(_tls_context(), server_hostname=server_hostname)
        except TimeoutError:
            self._abort()  # slow, not broken: the host backs off as for any timeout
            raise SmtpTransportError(Reason.TIMEOUT, "STARTTLS handshake timed out") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._abort()
            raise TlsFailed(Reason.CONNECTION_FAILED,
                            f"STARTTLS failed: {exc or type(exc).__name__}") from None
        self._tls = True
        self._extensions = set()
        return reply

    async def mail_from(self, sender: str, *, smtputf8: bool = False) -> SmtpReply:
        return (await self._replies(_mail_line(sender, smtputf8), 1))[0]

    async def rcpt_to(self, recipient: str) -> SmtpReply:
        return (await self.rcpt_many([recipient]))[0]

    async def rcpt_many(self, recipients: Sequence[str]) -> list[SmtpReply]:
        return await self._replies(_rcpt_lines(recipients), len(recipients))

    async def rset(self) -> SmtpReply:
        return await self._command("RSET")

    async def transaction(self, sender: str, recipients: Sequence[str], *, reset: bool,
                          smtputf8: bool = False) -> tuple[SmtpReply, list[SmtpReply]]:
        data = ((b"RSET\r\n" if reset else b"") + _mail_line(sender, smtputf8)
                + _rcpt_lines(recipients))
        replies = await self._replies(data, int(reset) + 1 + len(recipients))
        return replies[int(reset)], replies[int(reset) + 1:]

    def abort(self) -> None:
        self._dropped = True
        self._abort()

    def _abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()

    async def quit(self) -> None:
        if self._closed:
            return
        try:
            async with asyncio.timeout(2):
                self._writer.write(b"QUIT\r\n")
                await self._writer.drain()
                await read_reply(self._reader)
        except Exception:  # noqa: BLE001 - QUIT is a courtesy
            pass
        finally:
            self._closed = True
            self._writer.close()


class StreamSmtpConnector:
    """:class:`SmtpConnector` over asyncio streams (connects to IP literals only)."""

    def __init__(self, *, helo_name: str, connect_timeout: float, command_timeout: float) -> None:
        self.helo_name = helo_name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout

    async def open(self, ip: str, port: int) -> SmtpSession:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(ip, port, limit=64 * 1024)
                banner = await read_reply(reader)
        except TimeoutError:
            if writer is not None:
                writer.transport.abort()
            raise SmtpTransportError(
                Reason.TIMEOUT, f"timed out connecting to {ip}:{port} "
                f"(no greeting within {self.connect_timeout:g}s)") from None
        except SmtpTransportError:
            if writer is not None:
                writer.transport.abort()
            raise
        except OSError as exc:
            if writer is not None:
                writer.transport.abort()
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     f"{ip}:{port}: {exc.strerror or exc}") from None
        except BaseException:  # cancelled while connecting: leave no socket behind
            if writer is not None:
                writer.transport.abort()
            raise
        if banner.code != 220:
            writer.transport.abort()
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     f"greeting refused: {banner.code} {banner.message}",
                                     banner)
        return _StreamSession(reader, writer, banner, self.command_timeout)
