"""The default simulated mail world and a bulk generator for benchmarks.

Everything lives under the reserved TLD ``.test`` (one zone, ``test``), every address
is loopback. MX hosts are ``127.0.1.X``; the DNS server is ``127.0.2.1`` by default;
bulk MX hosts are ``127.0.3.X``. All MX hosts share one SMTP port.

"Standard mailboxes" below means: ``alice``, ``bob``, ``carol`` → 250 2.1.5;
``full`` → 552 5.2.2; ``fulltemp`` → 452 4.2.2; ``disabled`` → 550 5.2.1; any other
local part → 550 5.1.1. Every listening host supports STARTTLS except mx.notls.test.

Domains (MX preference → host @ address: behaviour)::

    ok.test          10 mx.ok.test @127.0.1.1: standard mailboxes; SPF -all,
                     DMARC p=reject, DKIM google._domainkey.ok.test, plus a non-SPF TXT
    spfsoft.test     10 mx.ok.test: SPF ~all, DMARC p=none
    spfbad.test      10 mx.ok.test: SPF syntax error ("ipv4:"), DMARC p=quarantine
    spfmulti.test    10 mx.ok.test: two SPF records (permerror), no DMARC
    nodmarc.test     10 mx.ok.test: SPF "v=spf1 mx -all", no DMARC, no DKIM
    shortttl.test    10 mx.ok.test: MX and SPF TXT with TTL 1 s (cache expiry)
    spftree.test     10 mx.ok.test: SPF includes _spf.esp.test, which includes two more
                     (3 lookups), ~all
    spfredir.test    10 mx.ok.test: SPF "redirect=_spf.esp.test" (effective -all)
    spfover.test     10 mx.ok.test: SPF of 11 DNS-querying terms in all (permerror)
    news.ok.test     10 mx.ok.test: SPF as spfredir.test; no DMARC of its own: ok.test's
                     (sp=quarantine) applies
    catchall.test    10 mx.catchall.test @127.0.1.2: accepts any mailbox; SPF, DMARC p=none
    greylist.test    10 mx.greylist.test @127.0.1.3: 451 4.7.1 until greylist_seconds
                     (default 2) after the first RCPT for that recipient, then standard
    tarpit.test      10 mx.tarpit.test @127.0.1.4: banner after 30 s, standard mailboxes
    refused.test     10 mx.refused.test @127.0.1.5: nothing listens (connection refused)
    blocked.test     10 mx.blocked.test @127.0.1.6: 554 5.7.1 banner (Spamhaus text)
    blockedrcpt.test 10 mx.blockedrcpt.test @127.0.1.7: 554 5.7.1 to every RCPT
    rcptlimit.test   10 mx.rcptlimit.test @127.0.1.8: catch-all; 452 4.5.3 from the 4th
                     RCPT of a connection (RSET does not reset the count)
    busy.test        10 mx.busy.test @127.0.1.9: max 1 connection, others get 421 4.7.0
    tls.test         10 mx.tls.test @127.0.1.10: MAIL before STARTTLS → 530 5.7.0
    slow.test        10 mx.slow.test @127.0.1.11: every reply after the banner +0.3 s
    amx.test         no MX; A 127.0.1.12 (implicit MX), standard mailboxes
    backup.test      10 mx1.backup.test @127.0.1.13 (not listening),
                     20 mx2.backup.test @127.0.1.14 (standard mailboxes)
    shared1..5.test  10 mx.shared.test @127.0.1.15: five domains, one host (politeness)
    notls.test       10 mx.notls.test @127.0.1.16: standard mailboxes, no STARTTLS
    helo.test        10 mx.helo.test @127.0.1.17: refuses EHLO (502), HELO only, no TLS
    msft.test        10 mx.msft.test @127.0.1.18: standard mailboxes, but an unknown one
                     gets Microsoft 365's "550 5.4.1 Recipient address rejected: Access
                     denied. AS(201806281)"; 452 4.5.3 to a transaction's 2nd RCPT
    qmail.test       10 mx.qmail.test @127.0.1.19: unknown → "511 sorry, no mailbox here
                     by that name (#5.1.1)"
    exchange.test    10 mx.exchange.test @127.0.1.20: unknown → "550 Requested action not
                     taken: mailbox unavailable"; ``storage`` → 452 4.3.1 Insufficient
                     system storage
    gmail.test       10 mx.gmail.test @127.0.1.21: unknown → Gmail's three-line 550 5.1.1
    senderck.test    10 mx.senderck.test @127.0.1.22: MAIL FROM of a domain outside .test
                     → 553 5.1.8 Sender address rejected: Domain not found
    senderrcpt.test  10 mx.senderrcpt.test @127.0.1.23: the same, told at every RCPT with
                     450 4.1.8 (Postfix's delayed reject)
    tlsbroken.test   10 mx.tlsbroken.test @127.0.1.24: offers and accepts STARTTLS, then
                     breaks the handshake; standard mailboxes without TLS
    servfail.test    every query SERVFAIL
    dnsdrop.test     no query answered (the resolver times out)
    bigtxt.test      10 mx.ok.test; SPF among 14 other TXT records: too large for UDP (TC
                     set), fetched over TCP
    nullmx.test      MX 0 . (null MX, RFC 7505)
    nomxhost.test    10 mx.nomxhost.test, a name with no record at all (NXDOMAIN)
    nxdomain.test    absent: NXDOMAIN

No SPF/DMARC/DKIM records exist except those listed; no AAAA records exist (AAAA
queries get NODATA or NXDOMAIN). Names outside ``.test`` (e.g. ``example.com``) get
REFUSED. TTLs are 300 s unless stated; the negative TTL (SOA minimum) is 60 s.
"""

from __future__ import annotations

from .spec import DEFAULT_TTL, MxHost, Record, Reply, WorldSpec, mailboxes, mx, txt

__all__ = [
    "ADDRESSES",
    "DKIM_OK",
    "DMARC_OK",
    "SPF_OK",
    "STANDARD_MAILBOXES",
    "bulk_address",
    "bulk_world",
    "default_world",
]

STANDARD_MAILBOXES: dict[str, Reply] = mailboxes(
    ["alice", "bob", "carol"],
    full=Reply.FULL,
    fulltemp=Reply.FULL_TEMP,
    disabled=Reply.DISABLED,
)
"""Mailbox rules of most default hosts (unlisted local parts → 550 5.1.1)."""

ADDRESSES: dict[str, str] = {
    "mx.ok.test": "127.0.1.1",
    "mx.catchall.test": "127.0.1.2",
    "mx.greylist.test": "127.0.1.3",
    "mx.tarpit.test": "127.0.1.4",
    "mx.refused.test": "127.0.1.5",
    "mx.blocked.test": "127.0.1.6",
    "mx.blockedrcpt.test": "127.0.1.7",
    "mx.rcptlimit.test": "127.0.1.8",
    "mx.busy.test": "127.0.1.9",
    "mx.tls.test": "127.0.1.10",
    "mx.slow.test": "127.0.1.11",
    "amx.test": "127.0.1.12",
    "mx1.backup.test": "127.0.1.13",
    "mx2.backup.test": "127.0.1.14",
    "mx.shared.test": "127.0.1.15",
    "mx.notls.test": "127.0.1.16",
    "mx.helo.test": "127.0.1.17",
    "mx.msft.test": "127.0.1.18",
    "mx.qmail.test": "127.0.1.19",
    "mx.exchange.test": "127.0.1.20",
    "mx.gmail.test": "127.0.1.21",
    "mx.senderck.test": "127.0.1.22",
    "mx.senderrcpt.test": "127.0.1.23",
    "mx.tlsbroken.test": "127.0.1.24",
}
"""MX host name → loopback address in the default world."""

SPF_OK = "v=spf1 ip4:127.0.1.1 -all"
DMARC_OK = "v=DMARC1; p=reject; sp=quarantine; pct=100; rua=mailto:dmarc@ok.test"
DKIM_OK = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDMxzPJ+wcg9j1WLJapQfuNVJUyk0g4"
    "XtYMV0d0cHRztv1J/ivvFMXZKQC6uF2PkjOfeNfHYqxosBYmQu0v/UGS/A2E2f7E2782+uNDaridclAmyTQBe"
    "6da9z7XgLVDeMASTfa2jiseKGlwPTjXvYBvMENbKHMz+WhL97gRW1CqYwIDAQAB"
)


def _host(name: str, **behaviour: object) -> MxHost:
    fields: dict[str, object] = {"mailboxes": dict(STANDARD_MAILBOXES)}
    fields.update(behaviour)
    return MxHost(address=ADDRESSES[name], hostname=name, **fields)  # type: ignore[arg-type]


def default_world(
    *,
    greylist_seconds: float = 2.0,
    tarpit_seconds: float = 30.0,
    slow_seconds: float = 0.3,
    rcpt_limit: int = 3,
    latency: float = 0.0,
    dns_latency: float = 0.0,
) -> WorldSpec:
    """The default world described in the module docstring (knobs for test speed)."""
    hosts = [
        _host("mx.ok.test"),
        _host("mx.catchall.test", mailboxes={}, catch_all=True),
        _host("mx.greylist.test", greylist_seconds=greylist_seconds),
        _host("mx.tarpit.test", banner_delay=tarpit_seconds),
        _host("mx.refused.test", listening=False),
        _host("mx.blocked.test", blocked="banner"),
        _host("mx.blockedrcpt.test", blocked="rcpt"),
        _host("mx.rcptlimit.test", mailboxes={}, catch_all=True, max_rcpt_per_session=rcpt_limit),
        _host("mx.busy.test", max_connections=1),
        _host("mx.tls.test", require_starttls=True),
        _host("mx.slow.test", reply_delay=slow_seconds),
        _host("amx.test"),
        _host("mx1.backup.test", listening=False),
        _host("mx2.backup.test"),
        _host("mx.shared.test"),
        _host("mx.notls.test", tls=False),
        _host("mx.helo.test", tls=False, esmtp=False),
        _host("mx.msft.test", unknown=Reply.MS365_UNKNOWN, rcpt_per_transaction=1),
        _host("mx.qmail.test", unknown=Reply.QMAIL_UNKNOWN),
        _host("mx.exchange.test", unknown=Reply.EXCHANGE_UNKNOWN,
              mailboxes={**STANDARD_MAILBOXES, "storage": Reply.STORAGE}),
        _host("mx.gmail.test", unknown=Reply.GMAIL_UNKNOWN),
        _host("mx.senderck.test", sender_check="mail"),
        _host("mx.senderrcpt.test", sender_check="rcpt"),
        _host("mx.tlsbroken.test", tls_broken=True),
    ]
    records: list[Record] = [
        # ok.test and its authentication variants, all on mx.ok.test
        mx("ok.test", 10, "mx.ok.test"),
        txt("ok.test", SPF_OK),
        txt("ok.test", "google-site-verification=mailsift-world-not-spf"),
        txt("_dmarc.ok.test", DMARC_OK),
        txt("google._domainkey.ok.test", DKIM_OK),
        mx("spfsoft.test", 10, "mx.ok.test"),
        txt("spfsoft.test", "v=spf1 ip4:127.0.1.1 ~all"),
        txt("_dmarc.spfsoft.test", "v=DMARC1; p=none"),
        mx("spfbad.test", 10, "mx.ok.test"),
        txt("spfbad.test", "v=spf1 ipv4:127.0.1.1 -all"),
        txt("_dmarc.spfbad.test", "v=DMARC1; p=quarantine"),
        mx("spfmulti.test", 10, "mx.ok.test"),
        txt("spfmulti.test", "v=spf1 ip4:127.0.1.1 -all"),
        txt("spfmulti.test", "v=spf1 mx ~all"),
        mx("nodmarc.test", 10, "mx.ok.test"),
        txt("nodmarc.test", "v=spf1 mx -all"),
        mx("shortttl.test", 10, "mx.ok.test", ttl=1),
        txt("shortttl.test", "v=spf1 mx -all", ttl=1),
        # SPF record trees (checks/spf.py) and an organizational-domain DMARC
        txt("_spf.esp.test", "v=spf1 include:_nb1.esp.test include:_nb2.esp.test -all"),
        txt("_nb1.esp.test", "v=spf1 ip4:127.0.1.1 -all"),
        txt("_nb2.esp.test", "v=spf1 ip4:127.0.1.2 ip6:::1 -all"),
        mx("spftree.test", 10, "mx.ok.test"),
        txt("spftree.test", "v=spf1 include:_spf.esp.test ~all"),
        mx("spfredir.test", 10, "mx.ok.test"),
        txt("spfredir.test", "v=spf1 redirect=_spf.esp.test"),
        mx("spfover.test", 10, "mx.ok.test"),
        txt("spfover.test", "v=spf1 include:_spf.esp.test a mx ptr exists:x.esp.test "
                            "a:x.esp.test mx:x.esp.test include:_nb1.esp.test "
                            "include:_nb2.esp.test ~all"),
        mx("news.ok.test", 10, "mx.ok.test"),
        txt("news.ok.test", "v=spf1 redirect=_spf.esp.test"),
        # one behaviour per domain
        mx("catchall.test", 10, "mx.catchall.test"),
        txt("catchall.test", "v=spf1 mx -all"),
        txt("_dmarc.catchall.test", "v=DMARC1; p=none"),
        mx("greylist.test", 10, "mx.greylist.test"),
        mx("tarpit.test", 10, "mx.tarpit.test"),
        mx("refused.test", 10, "mx.refused.test"),
        mx("blocked.test", 10, "mx.blocked.test"),
        mx("blockedrcpt.test", 10, "mx.blockedrcpt.test"),
        mx("rcptlimit.test", 10, "mx.rcptlimit.test"),
        mx("busy.test", 10, "mx.busy.test"),
        mx("tls.test", 10, "mx.tls.test"),
        mx("slow.test", 10, "mx.slow.test"),
        mx("notls.test", 10, "mx.notls.test"),
        mx("helo.test", 10, "mx.helo.test"),
        mx("msft.test", 10, "mx.msft.test"),
        mx("qmail.test", 10, "mx.qmail.test"),
        mx("exchange.test", 10, "mx.exchange.test"),
        mx("gmail.test", 10, "mx.gmail.test"),
        mx("senderck.test", 10, "mx.senderck.test"),
        mx("senderrcpt.test", 10, "mx.senderrcpt.test"),
        mx("tlsbroken.test", 10, "mx.tlsbroken.test"),
        # amx.test: no MX; its A record comes from the amx.test host (implicit MX)
        mx("backup.test", 20, "mx2.backup.test"),
        mx("backup.test", 10, "mx1.backup.test"),
        mx("nullmx.test", 0, "."),
        mx("nomxhost.test", 10, "mx.nomxhost.test"),
    ]
    records += [mx(f"shared{i}.test", 10, "mx.shared.test") for i in range(1, 6)]
    records += [mx("bigtxt.test", 10, "mx.ok.test"), txt("bigtxt.test", "v=spf1 mx -all")]
    records += [txt("bigtxt.test", f"site-verification-{i:02d}=" + "x" * 90)
                for i in range(14)]
    return WorldSpec(
        zones=["test"],
        records=records,
        mx_hosts=hosts,
        latency=latency,
        dns_latency=dns_latency,
        servfail=["servfail.test"],
        silent=["dnsdrop.test"],
    )


def bulk_address(index: int) -> str:
    """Loopback address of bulk MX host ``index`` (127.0.3.1, 127.0.3.2, ... 127.0.4.1 ...)."""
    return f"127.0.{3 + index // 254}.{index % 254 + 1}"


def bulk_world(
    n_domains: int,
    mailboxes_per_domain: int = 10,
    mx_hosts: int = 4,
    latency: float = 0.0,
    *,
    dns_latency: float = 0.0,
    ttl: int = DEFAULT_TTL,
    max_connections: int | None = None,
) -> WorldSpec:
    """A benchmark world: ``bulk{i}.test`` (i = 0..n-1) spread round-robin over hosts.

    MX host ``j`` is ``mx{j}.bulk.test`` at :func:`bulk_address` ``(j)``. Every domain
    has ``MX 10 mx{i % mx_hosts}.bulk.test`` and an SPF TXT record. On every host,
    ``user0`` .. ``user{mailboxes_per_domain-1}`` are accepted, every other local part
    gets 550 5.1.1. ``latency`` is added to every SMTP reply (seconds). With
    ``max_connections`` (K), every host answers ``421`` to a connection arriving while K
    of them are open (as large providers do per client).
    """
    if mx_hosts < 1 or mx_hosts > 254 * 50:
        raise ValueError("mx_hosts must be between 1 and 12700")
    boxes = mailboxes([f"user{k}" for k in range(mailboxes_per_domain)])
    hosts = [
        MxHost(address=bulk_address(j), hostname=f"mx{j}.bulk.test", mailboxes=boxes,
               max_connections=max_connections)
        for j in range(mx_hosts)
    ]
    records: list[Record] = []
    for i in range(n_domains):
        domain = f"bulk{i}.test"
        records.append(mx(domain, 10, f"mx{i % mx_hosts}.bulk.test", ttl=ttl))
        records.append(txt(domain, "v=spf1 mx -all", ttl=ttl))
    return WorldSpec(
        zones=["test"],
        records=records,
        mx_hosts=hosts,
        latency=latency,
        dns_latency=dns_latency,
    )
