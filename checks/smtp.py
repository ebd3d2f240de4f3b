"""The SMTP transport: a small protocol for one client session, and its aiosmtplib implementation.

The probe logic (:mod:`checks.probe`) only talks to :class:`SmtpConnector` and
:class:`SmtpSession`, so tests can swap the network the way httpx swaps transports.
Sessions connect to an IP address we resolved ourselves (never a host name), and the
protocol offers no way to send ``DATA`` or ``BDAT``: a probe can never send mail.
"""

from __future__ import annotations

import functools
import ssl
from typing import Protocol

import aiosmtplib

from checks.model import Reason, SmtpReply
from checks.replies import parse_reply

__all__ = [
    "SmtpTransportError", "SmtpConnector", "SmtpSession", "AioSmtpConnector",
]


class SmtpTransportError(Exception):
    """The connection failed, timed out or was dropped; ``reason`` says which."""

    def __init__(self, reason: Reason, message: str, reply: SmtpReply | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.reply = reply  # a greeting refusal (e.g. 421/554 banner), when there was one


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

    async def rset(self) -> SmtpReply: ...

    async def quit(self) -> None:
        """QUIT politely; never raises."""
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


class _AioSession:
    def __init__(self, client: aiosmtplib.SMTP, banner: SmtpReply) -> None:
        self._client = client
        self.banner = banner

    async def _execute(self, *args: bytes) -> SmtpReply:
        try:
            response = await self._client.execute_command(*args)
        except aiosmtplib.SMTPTimeoutError as exc:
            raise SmtpTransportError(Reason.TIMEOUT, f"timed out: {exc}") from None
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, f"disconnected: {exc}") from None
        return parse_reply(response.code, response.message)

    async def hello(self, name: str) -> SmtpReply:
        try:
            response = await self._client.ehlo(hostname=name)
        except aiosmtplib.SMTPHeloError:
            try:
                response = await self._client.helo(hostname=name)
            except aiosmtplib.SMTPHeloError as exc:
                return parse_reply(exc.code, exc.message)
            except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
                raise _transport(exc) from None
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise _transport(exc) from None
        return parse_reply(response.code, response.message)

    def supports(self, extension: str) -> bool:
        return self._client.supports_extension(extension)

    @property
    def tls_active(self) -> bool:
        return self._client.get_transport_info("sslcontext") is not None

    async def starttls(self, server_hostname: str) -> SmtpReply:
        try:
            response = await self._client.starttls(
                server_hostname=server_hostname, tls_context=_tls_context()
            )
        except aiosmtplib.SMTPResponseException as exc:
            return parse_reply(exc.code, exc.message)
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise _transport(exc) from None
        except (ssl.SSLError, OSError, aiosmtplib.SMTPException) as exc:
            raise SmtpTransportError(Reason.CONNECTION_FAILED, f"STARTTLS failed: {exc}") \
                from None
        return parse_reply(response.code, response.message)

    async def mail_from(self, sender: str, *, smtputf8: bool = False) -> SmtpReply:
        arg = f"FROM:<{sender}>" + (" SMTPUTF8" if smtputf8 else "")
        return await self._execute(b"MAIL", arg.encode("utf-8"))

    async def rcpt_to(self, recipient: str) -> SmtpReply:
        if any(c in recipient for c in "\r\n\0<>"):
            raise ValueError("recipient contains characters that cannot appear in RCPT TO")
        return await self._execute(b"RCPT", f"TO:<{recipient}>".encode())

    async def rset(self) -> SmtpReply:
        return await self._execute(b"RSET")

    async def quit(self) -> None:
        try:
            if self._client.is_connected:
                await self._client.execute_command(b"QUIT", timeout=2)
        except Exception:  # noqa: BLE001 - QUIT is a courtesy
            pass
        finally:
            self._client.close()


def _transport(exc: Exception) -> SmtpTransportError:
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return SmtpTransportError(Reason.TIMEOUT, f"timed out: {exc}")
    return SmtpTransportError(Reason.CONNECTION_FAILED, str(exc) or type(exc).__name__)


class AioSmtpConnector:
    """:class:`SmtpConnector` over aiosmtplib (connects to IP literals only)."""

    def __init__(self, *, helo_name: str, connect_timeout: float, command_timeout: float) -> None:
        self.helo_name = helo_name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout

    async def open(self, ip: str, port: int) -> SmtpSession:
        client = aiosmtplib.SMTP(
            hostname=ip, port=port, timeout=self.command_timeout, start_tls=False,
            use_tls=False, local_hostname=self.helo_name, validate_certs=False,
        )
        try:
            response = await client.connect(timeout=self.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            client.close()
            reply = parse_reply(exc.code, exc.message)
            raise SmtpTransportError(Reason.CONNECTION_FAILED,
                                     f"greeting refused: {exc.code} {exc.message}",
                                     reply) from None
        except aiosmtplib.SMTPConnectTimeoutError as exc:
            client.close()
            raise SmtpTransportError(Reason.TIMEOUT, str(exc)) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            client.close()
            raise SmtpTransportError(Reason.CONNECTION_FAILED, str(exc)) from None
        return _AioSession(client, parse_reply(response.code, response.message))
