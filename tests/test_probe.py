"""The SMTP probe logic against a scripted in-memory transport (no sockets)."""

from __future__ import annotations

import ipaddress

import pytest

from checks.model import MxHost, MxResult, MxStatus, Reason, ReplyClass, SmtpReply
from checks.politeness import LocalPoliteness
from checks.probe import ProbeConfig, SmtpProber
from tests.fakes import FakeConnector, FakeServer

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
OK = SmtpReply(250, "OK", "2.1.5")



def mx(*ips: str) -> MxResult:
    return MxResult(MxStatus.OK, tuple(MxHost(10 * i, f"mx{i}.x.test", (ip,))
                                       for i, ip in enumerate(ips)))


def prober(servers: dict[str, FakeServer], **cfg: object) -> tuple[SmtpProber, FakeConnector]:
    conn = FakeConnector(servers)
    config = ProbeConfig(allowed_networks=LOOPBACK, **cfg)  # type: ignore[arg-type]
    return SmtpProber(conn, LocalPoliteness(max_connections=2, rcpt_per_second=1000),
                      config), conn


@pytest.mark.asyncio
async def test_many_recipients_share_one_session_with_rset_between_groups() -> None:
    server = FakeServer(lambda r, n: OK if r.startswith("a") else SmtpReply(550, "x", "5.1.1"))
    p, conn = prober({"127.0.0.1": server}, rcpt_per_transaction=2)
    report = await p.probe(mx("127.0.0.1"), ["a1@x.test", "b@x.test", "a2@x.test"])
    assert report.connections == 1 and server.sessions == 1
    assert report.results["a1@x.test"].reply_class is ReplyClass.ACCEPTED
    assert report.results["b@x.test"].reply_class is ReplyClass.MAILBOX_NOT_FOUND
    assert server.log.count("RSET") == 1 and server.log.count("MAIL verify@mailsift.invalid") == 2
    assert server.log[-1] != "QUIT"  # the session stays in the pool for the next group
    await p.pool.aclose()
    assert server.log[-1] == "QUIT"
    assert not any(c.startswith(("DATA", "BDAT")) for c in server.log)


@pytest.mark.asyncio
async def test_falls_back_to_next_mx_when_first_refuses() -> None:
    servers = {"127.0.0.1": FakeServer(refuse=True), "127.0.0.2": FakeServer()}
    p, conn = prober(servers)
    report = await p.probe(mx("127.0.0.1", "127.0.0.2"), ["a@x.test"])
    assert conn.opened == ["127.0.0.1", "127.0.0.2"]
    assert report.results["a@x.test"].mx_address == "127.0.0.2"


@pytest.mark.asyncio
async def test_all_mx_refuse_gives_connection_failed() -> None:
    p, _ = prober({"127.0.0.1": FakeServer(refuse=True)})
    report = await p.probe(mx("127.0.0.1"), ["a@x.test", "b@x.test"])
    assert {r.reason for r in report.results.values()} == {Reason.CONNECTION_FAILED}


@pytest.mark.asyncio
async def test_reconnects_on_too_many_recipients() -> None:
    def limit(r: str, n: int) -> SmtpReply:
        return OK if n <= 2 else SmtpReply(452, "Too many recipients", "4.5.3")

    server = FakeServer(limit)
    p, _ = prober({"127.0.0.1": server})
    rcpts = [f"u{i}@x.test" for i in range(5)]
    report = await p.probe(mx("127.0.0.1"), rcpts)
    assert server.sessions == 3
    assert all(report.results[r].reply_class is ReplyClass.ACCEPTED for r in rcpts)


@pytest.mark.asyncio
async def test_banner_block_is_blocked_not_connection_failure() -> None:
    banner = SmtpReply(554, "Service unavailable; client host blocked using zen.spamhaus.org",
                       "5.7.1")
    p, _ = prober({"127.0.0.1": FakeServer(banner=banner)})
    report = await p.probe(mx("127.0.0.1"), ["a@x.test"])
    assert report.results["a@x.test"].reply_class is ReplyClass.BLOCKED


@pytest.mark.asyncio
async def test_starttls_used_when_offered() -> None:
    server = FakeServer(starttls=True)
    p, _ = prober({"127.0.0.1": server})
    await p.probe(mx("127.0.0.1"), ["a@x.test"])
    assert server.log[:3] == ["EHLO verify.mailsift.invalid", "STARTTLS",
                              "EHLO verify.mailsift.invalid"]


@pytest.mark.asyncio
@pytest.mark.parametrize("pipelining", [False, True])
async def test_sender_refusal_applies_to_all_recipients(pipelining: bool) -> None:
    server = FakeServer(mail=SmtpReply(550, "sender rejected by policy", "5.7.1"),
                        pipelining=pipelining)
    p, _ = prober({"127.0.0.1": server})
    report = await p.probe(mx("127.0.0.1"), ["a@x.test", "b@x.test"])
    # pipelined, the RCPTs went with the MAIL FROM, and their 503s were not taken as answers
    assert {r.reply_class for r in report.results.values()} == {ReplyClass.BLOCKED}
    assert {r.reply.code for r in report.results.values() if r.reply} == {550}
    assert not any(c.startswith("RCPT") for c in server.log)


@pytest.mark.asyncio
async def test_public_only_by_default_mx_not_allowed() -> None:
    conn = FakeConnector({"127.0.0.1": FakeServer()})
    p = SmtpProber(conn, LocalPoliteness(max_connections=1, rcpt_per_second=10), ProbeConfig())
    report = await p.probe(mx("127.0.0.1"), ["a@x.test"])
    assert report.results["a@x.test"].reason is Reason.MX_NOT_ALLOWED
    assert conn.opened == []


@pytest.mark.asyncio
async def test_a_late_send_delays_the_next_instead_of_crowding_it() -> None:
    """Permits 103 ms apart (10 RCPT/s). The first is used 80 ms late (a busy loop); the
    second permit is then already due, but the send still waits a full interval after the
    first *actual* send, so no rolling second sees more than the rate."""
    import asyncio

    politeness = LocalPoliteness(max_connections=2, rcpt_per_second=10)
    p = SmtpProber(FakeConnector({}), politeness, ProbeConfig())
    loop = asyncio.get_running_loop()
    interval = politeness.rcpt_interval("192.0.2.1")
    start = loop.time()
    await p._pace("192.0.2.1", start - 0.08, 1)  # late: sent now, 80 ms after its permit
    first = loop.time()
    await p._pace("192.0.2.1", start - 0.08 + interval, 1)  # due 23 ms ago
    second = loop.time()
    assert second - first >= interval * 0.99
    await p._pace("192.0.2.9", start - 1.0, 1)  # another host is not held back
    assert loop.time() - second < interval / 2
    await p._pace("192.0.2.1", start - 1.0, 3)  # a group of 3 uses three slots of the grid
    group = loop.time()
    await p._pace("192.0.2.1", start - 1.0, 1)
    assert loop.time() - group >= 3 * interval * 0.99


@pytest.mark.asyncio
async def test_a_mailbox_reply_to_mail_from_speaks_of_our_sender() -> None:
    """A MAIL FROM refused with words that would mean "no such mailbox" at RCPT is about
    the sender: no recipient is made undeliverable by it."""
    server = FakeServer(mail=SmtpReply(553, "sorry, that domain isn't in my list of "
                                            "allowed rcpthosts", None))
    p, _ = prober({"127.0.0.1": server})
    report = await p.probe(mx("127.0.0.1"), ["a@x.test", "b@x.test"])
    assert {r.reply_class for r in report.results.values()} == {ReplyClass.SENDER_REJECTED}


@pytest.mark.asyncio
async def test_a_temporary_mailbox_reply_to_mail_from_is_temporary() -> None:
    """A 4xx MAIL FROM reply in mailbox words (``452 4.2.2``) is passing trouble at that
    server: the next MX is asked, and with none left the recipients are temporary, not
    refused and not full."""
    full = SmtpReply(452, "Mailbox full", "4.2.2")
    servers = {"127.0.0.1": FakeServer(mail=full), "127.0.0.2": FakeServer()}
    p, _ = prober(servers)
    report = await p.probe(mx("127.0.0.1", "127.0.0.2"), ["a@x.test"])
    assert report.results["a@x.test"].reply_class is ReplyClass.ACCEPTED
    assert servers["127.0.0.2"].sessions == 1
    p, _ = prober({"127.0.0.1": FakeServer(mail=full)})
    report = await p.probe(mx("127.0.0.1"), ["a@x.test", "b@x.test"])
    assert {r.reply_class for r in report.results.values()} == {ReplyClass.TEMPORARY}
