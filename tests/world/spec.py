"""Declarative description of a simulated mail world: DNS records and MX host behaviours.

A :class:`WorldSpec` is plain data (dataclasses); :class:`tests.world.runner.World` turns
it into running servers. Build records with the small factories :func:`a`, :func:`aaaa`,
:func:`mx` and :func:`txt`, and describe each SMTP listener with an :class:`MxHost`.

Every address used by a spec must be inside ``127.0.0.0/8``; :meth:`WorldSpec.validate`
checks that, so a mistake can never make a test talk to the outside world.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "CERT_FILE",
    "DEFAULT_TTL",
    "KEY_FILE",
    "MxHost",
    "Record",
    "Reply",
    "WorldSpec",
    "a",
    "aaaa",
    "mailboxes",
    "merge",
    "mx",
    "normalize_name",
    "txt",
]

DEFAULT_TTL = 300
"""TTL (seconds) of a record built without an explicit ``ttl``."""

CERT_FILE = Path(__file__).parent / "certs" / "cert.pem"
"""Self-signed certificate (CN=mx.world.test) used for STARTTLS."""

KEY_FILE = Path(__file__).parent / "certs" / "key.pem"
"""Private key matching :data:`CERT_FILE`."""

RecordType = Literal["A", "AAAA", "MX", "TXT", "NS", "CNAME", "PTR", "SOA"]


class Reply(enum.Enum):
    """What an MX host answers to ``RCPT TO`` for a mailbox (code, enhanced code, text)."""

    ACCEPT = (250, "2.1.5", "OK")
    UNKNOWN = (550, "5.1.1", "user unknown")
    FULL = (552, "5.2.2", "mailbox full")
    FULL_TEMP = (452, "4.2.2", "mailbox full")
    DISABLED = (550, "5.2.1", "mailbox disabled")
    # real servers' texts (issue #10)
    #: Microsoft 365 Directory-Based Edge Blocking: the mailbox does not exist
    MS365_UNKNOWN = (550, "5.4.1", "Recipient address rejected: Access denied. "
                     "AS(201806281) [DM6NAM12FT034.eop-nam12.prod.protection.outlook.com]")
    #: qmail/chkuser: no enhanced code in front, one at the end
    QMAIL_UNKNOWN = (511, "", "sorry, no mailbox here by that name (#5.1.1)")
    #: Exchange on premises, no enhanced code at all
    EXCHANGE_UNKNOWN = (550, "", "Requested action not taken: mailbox unavailable")
    #: Gmail: three lines, each repeating the enhanced code
    GMAIL_UNKNOWN = (550, "5.1.1", "The email account that you tried to reach does not "
                     "exist. Please try\ndouble-checking the recipient's email address for "
                     "typos or\nunnecessary spaces. https://support.google.com/mail/?p=NoSuchUser")
    #: the server's own trouble, not a full mailbox
    STORAGE = (452, "4.3.1", "Insufficient system storage")

    @property
    def code(self) -> int:
        """The three-digit SMTP reply code."""
        return self.value[0]

    @property
    def line(self) -> str:
        """The reply text after the code, e.g. ``"5.1.1 user unknown"``; the lines of a
        multi-line reply (``\n``-separated) each start with the enhanced code."""
        enhanced, text = self.value[1], self.value[2]
        return "\n".join(f"{enhanced} {ln}" if enhanced else ln for ln in text.split("\n"))


@dataclass(frozen=True)
class Record:
    """One DNS resource record.

    ``value`` is the record data in zone-file syntax for A/AAAA/MX/NS/CNAME/PTR
    (``"10 mx.ok.test."``); for TXT it is the raw text, unquoted (split into 255-byte
    strings automatically).
    """

    name: str
    rtype: RecordType
    value: str
    ttl: int = DEFAULT_TTL

    @property
    def fqdn(self) -> str:
        """The owner name, lower-cased, without the trailing dot."""
        return normalize_name(self.name)


def normalize_name(name: str) -> str:
    """Lower-case a domain name and strip the trailing dot (the root is ``""``)."""
    return name.strip().rstrip(".").lower()


def a(name: str, address: str, ttl: int = DEFAULT_TTL) -> Record:
    """An ``A`` record."""
    return Record(name, "A", address, ttl)


def aaaa(name: str, address: str, ttl: int = DEFAULT_TTL) -> Record:
    """An ``AAAA`` record."""
    return Record(name, "AAAA", address, ttl)


def mx(name: str, preference: int, exchange: str, ttl: int = DEFAULT_TTL) -> Record:
    """An ``MX`` record; ``exchange="."`` gives a null MX (RFC 7505) with preference 0."""
    target = exchange if exchange.endswith(".") else exchange + "."
    return Record(name, "MX", f"{preference} {target}", ttl)


def txt(name: str, text: str, ttl: int = DEFAULT_TTL) -> Record:
    """A ``TXT`` record holding ``text`` (unquoted)."""
    return Record(name, "TXT", text, ttl)


BlockedAt = Literal["banner", "rcpt"]
SenderCheck = Literal["mail", "rcpt"]


@dataclass
class MxHost:
    """One SMTP listener (one MX host) and its scripted behaviour.

    Behaviours compose: e.g. a host can be greylisting *and* slow *and* limit recipients.

    Attributes:
        address: loopback IPv4 address it listens on (``127.0.1.X`` by convention).
        hostname: its DNS name; unless ``publish_a`` is false, an ``A`` record
            ``hostname -> address`` is served automatically.
        mailboxes: RCPT reply per mailbox. Keys are a lower-cased local part
            (``"alice"``) or a full address (``"alice@ok.test"``, wins over the local
            part). Unlisted mailboxes get :attr:`Reply.UNKNOWN` unless ``catch_all``.
        catch_all: accept every mailbox not explicitly listed in ``mailboxes``.
        greylist_seconds: if > 0, RCPT for a recipient gets ``451 4.7.1`` until that many
            seconds passed since the first attempt for that recipient (address,
            lower-cased; any sender, any session), then the normal rules apply.
        banner_delay: seconds before the 220 banner (tarpit).
        reply_delay: seconds added before every reply after the banner.
        listening: false = nothing listens on ``address`` (connection refused).
        blocked: ``"banner"`` = 554 greeting (then 503 to everything but QUIT);
            ``"rcpt"`` = 554 to every RCPT. Text names the client IP and zen.spamhaus.org.
        max_rcpt_per_session: if set (K), RCPT number K+1, K+2... of one *connection* get
            ``452 4.5.3 Too many recipients``. Every RCPT command counts (whatever its
            reply). The count resets only on a new connection — not on RSET, MAIL or
            EHLO — unless ``rcpt_limit_resets_on_rset`` is true.
        rcpt_limit_resets_on_rset: make RSET reset the per-session RCPT count.
        max_connections: if set (K), a connection arriving while K are already open gets
            the banner ``421 4.7.0 Too many connections, try later`` and is closed.
        require_starttls: MAIL FROM before STARTTLS gets ``530 5.7.0``.
        tls: advertise and support STARTTLS (with the shipped self-signed certificate).
        idle_timeout: seconds of client silence before the server closes the connection.
        esmtp: false = an old server that refuses EHLO (502) and speaks only HELO.
        unknown: the reply for a mailbox not in ``mailboxes`` (when not ``catch_all``).
        sender_check: refuse a MAIL FROM whose domain cannot resolve (one not under
            ``sender_zones``, as the world serves only those) like Postfix's
            ``reject_unknown_sender_domain``: ``"mail"`` = ``553 5.1.8`` to MAIL FROM,
            ``"rcpt"`` = ``450 4.1.8`` to every RCPT (Postfix's delayed reject). The null
            sender ``<>`` is never refused.
        sender_zones: DNS suffixes a sender's domain must be under to pass ``sender_check``.
        tls_broken: STARTTLS is advertised and accepted (220), then the server sends bytes
            that are no TLS record and closes the connection (a broken TLS stack).
        rcpt_per_transaction: if set (K), RCPT number K+1... of one *transaction* get
            ``452 4.5.3`` (consumer Outlook answers the second RCPT so); RSET or a new
            MAIL starts the count again.
    """

    address: str
    hostname: str
    mailboxes: dict[str, Reply] = field(default_factory=dict)
    catch_all: bool = False
    greylist_seconds: float = 0.0
    banner_delay: float = 0.0
    reply_delay: float = 0.0
    listening: bool = True
    blocked: BlockedAt | None = None
    max_rcpt_per_session: int | None = None
    rcpt_limit_resets_on_rset: bool = False
    max_connections: int | None = None
    require_starttls: bool = False
    tls: bool = True
    idle_timeout: float = 120.0
    publish_a: bool = True
    esmtp: bool = True
    unknown: Reply = Reply.UNKNOWN
    sender_check: SenderCheck | None = None
    sender_zones: tuple[str, ...] = ("test",)
    rcpt_per_transaction: int | None = None
    tls_broken: bool = False

    def sender_resolves(self, sender: str) -> bool:
        """Whether ``sender``'s domain is one this world could resolve (``<>`` is fine)."""
        if not sender:
            return True
        domain = normalize_name(sender.rpartition("@")[2])
        return any(domain == z or domain.endswith("." + z) for z in self.sender_zones)

    def reply_for(self, address: str) -> Reply:
        """The mailbox rule for ``address`` (greylist/limits/blocks not considered)."""
        addr = address.strip().lower()
        local = addr.rpartition("@")[0] if "@" in addr else addr
        if addr in self.mailboxes:
            return self.mailboxes[addr]
        if local in self.mailboxes:
            return self.mailboxes[local]
        return Reply.ACCEPT if self.catch_all else self.unknown


@dataclass
class WorldSpec:
    """Everything a :class:`~tests.world.runner.World` serves.

    Attributes:
        zones: DNS suffixes served authoritatively (e.g. ``["test"]``). Names under them
            that have no record get NXDOMAIN; names outside get REFUSED.
        records: DNS records (``A`` records of :class:`MxHost` hostnames are implicit).
        mx_hosts: SMTP listeners, one per distinct address.
        latency: seconds added before *every* SMTP reply, banner included (benchmarks):
            a network round trip, so commands pipelined in one write (RFC 2920) share it.
        dns_latency: seconds added before every DNS answer.
        servfail: names whose every query is answered ``SERVFAIL``.
        silent: names whose queries get no answer at all (the client times out).
    """

    zones: list[str] = field(default_factory=lambda: ["test"])
    records: list[Record] = field(default_factory=list)
    mx_hosts: list[MxHost] = field(default_factory=list)
    latency: float = 0.0
    dns_latency: float = 0.0
    servfail: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)

    def all_records(self) -> list[Record]:
        """``records`` plus the implicit ``A`` record of each MX host hostname."""
        out = list(self.records)
        for host in self.mx_hosts:
            if host.publish_a:
                out.append(a(host.hostname, host.address))
        return out

    def host(self, key: str) -> MxHost:
        """The :class:`MxHost` whose hostname or address is ``key``."""
        k = normalize_name(key)
        for host in self.mx_hosts:
            if k in (normalize_name(host.hostname), host.address):
                return host
        raise KeyError(key)

    def validate(self) -> None:
        """Raise ``ValueError`` if an address leaves 127.0.0.0/8 or an address repeats."""
        loopback = ipaddress.ip_network("127.0.0.0/8")
        seen: set[str] = set()
        for host in self.mx_hosts:
            if ipaddress.ip_address(host.address) not in loopback:
                raise ValueError(f"MX host {host.hostname}: {host.address} not in 127.0.0.0/8")
            if host.address in seen:
                raise ValueError(f"MX host address {host.address} used twice")
            seen.add(host.address)
        for rec in self.records:
            if rec.rtype == "A" and ipaddress.ip_address(rec.value) not in loopback:
                raise ValueError(f"A record {rec.name}: {rec.value} not in 127.0.0.0/8")
            if rec.rtype == "AAAA" and not ipaddress.ip_address(rec.value).is_loopback:
                raise ValueError(f"AAAA record {rec.name}: {rec.value} is not ::1")


def merge(*specs: WorldSpec) -> WorldSpec:
    """One spec serving all of ``specs`` (zones, records and hosts concatenated).

    Latencies are the maximum of the inputs. Host addresses must not collide.
    """
    zones: list[str] = []
    for spec in specs:
        zones.extend(z for z in spec.zones if z not in zones)
    merged = WorldSpec(
        zones=zones,
        records=[r for s in specs for r in s.records],
        mx_hosts=[h for s in specs for h in s.mx_hosts],
        latency=max((s.latency for s in specs), default=0.0),
        dns_latency=max((s.dns_latency for s in specs), default=0.0),
        servfail=[n for s in specs for n in s.servfail],
        silent=[n for s in specs for n in s.silent],
    )
    merged.validate()
    return merged


def mailboxes(accept: Iterable[str] = (), **special: Reply) -> dict[str, Reply]:
    """Convenience: ``mailboxes(["alice", "bob"], full=Reply.FULL)``."""
    out = {name.lower(): Reply.ACCEPT for name in accept}
    out.update({k.lower(): v for k, v in special.items()})
    return out
