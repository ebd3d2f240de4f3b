"""The SMTP probe logic against a scripted in-memory transport (no sockets)."""

from __future__ import annotations

import asyncio
import ipaddress
import time

import pytest

from checks.model import MxHost, MxResult, MxStatus, Reason, ReplyClass, SmtpReply
from checks.politeness import GridSpan, LocalPoliteness, RcptPermits
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


class LateOnce(LocalPoliteness):
    """Its first reservation is read 50 ms late (a busy event loop): a permit that came
    too late to be used."""

    def __init__(self, log: list[str] | None = None) -> None:
        super().__init__(max_connections=2, rcpt_per_second=10)
        self.reservations = 0
        #: what the server had been told when each reservation was made
        self.server_log = log
        self.seen: list[list[str]] = []
        self.given_back: list[GridSpan | None] = []
        self.granted: list[RcptPermits] = []

    async def reserve_rcpts(self, mx_ip: str, count: int, *,
                            unused: GridSpan | None = None) -> RcptPermits:
        permits = await super().reserve_rcpts(mx_ip, count, unused=unused)
        self.given_back.append(unused)
        self.granted.append(permits)
        self.reservations += 1
        if self.server_log is not None:
            self.seen.append(list(self.server_log))
        if self.reservations == 1:
            await asyncio.sleep(0.05)
        return permits


@pytest.mark.asyncio
async def test_a_permit_that_came_too_late_is_not_used() -> None:
    """Another worker may send the next permits of the host on time: a RCPT sent 50 ms
    behind its permit would bunch with them, so it gets a new permit instead."""
    for pipelining in (True, False):
        server = FakeServer(pipelining=pipelining)
        politeness = LateOnce()
        p = SmtpProber(FakeConnector({"127.0.0.1": server}), politeness,
                       ProbeConfig(allowed_networks=LOOPBACK))
        report = await p.probe(mx("127.0.0.1"), ["a@x.test"])
        assert report.results["a@x.test"].reply_class is ReplyClass.ACCEPTED
        assert politeness.reservations == 2 and p.late_permits == 1
        assert [c for c in server.log if c.startswith("RCPT")] == ["RCPT a@x.test"]
        # nobody reserved after the late permit: it went back, and the new one took its
        # place at once instead of the grid's next (a whole interval after it)
        late, new = politeness.granted
        assert politeness.given_back == [None, late.unused(0)]
        assert new.first - late.first < politeness.rcpt_interval("127.0.0.1")


@pytest.mark.asyncio
async def test_pace_waits_for_the_permit_and_refuses_a_late_one() -> None:
    p = SmtpProber(FakeConnector({}), LocalPoliteness(max_connections=2, rcpt_per_second=10),
                   ProbeConfig())
    ip = "192.0.2.1"
    now = time.monotonic()
    assert await p._pace(ip, RcptPermits((now + 0.03,)), 0, 1)
    assert time.monotonic() >= now + 0.03
    now = time.monotonic()
    assert not await p._pace(ip, RcptPermits((now - 0.025,)), 0, 1)
    # the grid's clock may have been read up to ``unsure`` before the permit's due time
    now = time.monotonic()
    assert not await p._pace(ip, RcptPermits((now,), unsure=0.03), 0, 1)
    assert await p._pace(ip, RcptPermits((now + 0.005,), unsure=0.002), 0, 1)


@pytest.mark.asyncio
async def test_at_grouped_rates_a_late_send_delays_the_next_instead_of_crowding_it() -> None:
    """200 RCPT/s: permits go in pipelined groups. A group sent 80 ms late is sent (not
    given up), and this process's next send to the host waits the grid time of that group
    after the late one, even though its own permit is already due."""
    politeness = LocalPoliteness(max_connections=2, rcpt_per_second=200)
    p = SmtpProber(FakeConnector({}), politeness, ProbeConfig())
    interval = politeness.rcpt_interval("192.0.2.1")
    start = time.monotonic()
    assert await p._pace("192.0.2.1", RcptPermits((start - 0.08,)), 0, 10)
    first = time.monotonic()
    assert await p._pace("192.0.2.1", RcptPermits((start - 0.08 + 10 * interval,)), 0, 10)
    assert time.monotonic() - first >= 10 * interval * 0.99
    assert p.late_permits == 0
    second = time.monotonic()
    assert await p._pace("192.0.2.9", RcptPermits((start - 1.0,)), 0, 10)  # another host
    assert time.monotonic() - second < 5 * interval


@pytest.mark.asyncio
async def test_lock_step_opens_the_transaction_before_it_reserves_permits() -> None:
    """Without PIPELINING, MAIL FROM takes a round trip of its own: it goes before the
    permits are reserved, so its reply never makes the RCPT late."""
    server = FakeServer(pipelining=False)
    politeness = LateOnce(server.log)
    p = SmtpProber(FakeConnector({"127.0.0.1": server}), politeness,
                   ProbeConfig(allowed_networks=LOOPBACK, rcpt_per_transaction=1))
    await p.probe(mx("127.0.0.1"), ["a@x.test", "b@x.test"])
    mails = [sum(c.startswith("MAIL") for c in log) for log in politeness.seen]
    assert mails == [1, 1, 2]  # late, then one per transaction: each MAIL before its RCPT


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
