"""The engine against every behaviour of the simulated mail world (real loopback sockets)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio

from checks import Engine, EngineConfig
from checks.config import ProviderPolicy
from checks.model import Reason, Verdict
from tests.world import MxHost, World, WorldSpec, default_world, mailboxes, merge, mx

pytestmark = [pytest.mark.world, pytest.mark.asyncio]

# a domain with a role mailbox and a disposable-provider domain, beside the default world
EXTRA = WorldSpec(
    zones=["test", "com"],
    records=[mx("roles.test", 10, "mx.roles.test"), mx("mailinator.com", 10, "mx.roles.test")],
    mx_hosts=[MxHost("127.0.1.40", "mx.roles.test",
                     mailboxes=mailboxes(["info", "postmaster", "dave"]))],
)


def config_for(world: World, **overrides: object) -> EngineConfig:
    host, port = world.nameserver.rsplit(":", 1)
    base = EngineConfig(
        nameservers=((host, int(port)),), dns_timeout=2.0, smtp_port=world.smtp_port,
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), connect_timeout=1.0,
        command_timeout=1.5, session_timeout=8.0, mx_rcpt_per_second=500.0,
        allow_test_tld=True, helo_name="probe.mailsift.test", mail_from="verify@mailsift.test",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    async with World(merge(default_world(greylist_seconds=1.0), EXTRA)) as w:
        yield w
        assert w.data_commands == 0, "a probe must never send DATA/BDAT"


CASES = [
    ("alice@ok.test", Verdict.DELIVERABLE, Reason.OK),
    ("Bob@OK.test", Verdict.DELIVERABLE, Reason.OK),
    ("nobody@ok.test", Verdict.UNDELIVERABLE, Reason.MAILBOX_NOT_FOUND),
    ("disabled@ok.test", Verdict.UNDELIVERABLE, Reason.MAILBOX_DISABLED),
    ("full@ok.test", Verdict.RISKY, Reason.MAILBOX_FULL),
    ("fulltemp@ok.test", Verdict.RISKY, Reason.MAILBOX_FULL),
    ("anyone@catchall.test", Verdict.RISKY, Reason.CATCH_ALL),
    ("info@roles.test", Verdict.RISKY, Reason.ROLE_ACCOUNT),
    ("dave@roles.test", Verdict.DELIVERABLE, Reason.OK),
    ("dave@mailinator.com", Verdict.RISKY, Reason.DISPOSABLE),
    ("alice@greylist.test", Verdict.UNKNOWN, Reason.GREYLISTED),
    ("alice@tarpit.test", Verdict.UNKNOWN, Reason.TIMEOUT),
    ("alice@refused.test", Verdict.UNKNOWN, Reason.CONNECTION_FAILED),
    ("alice@blocked.test", Verdict.UNKNOWN, Reason.BLOCKED),
    ("alice@blockedrcpt.test", Verdict.UNKNOWN, Reason.BLOCKED),
    ("alice@tls.test", Verdict.DELIVERABLE, Reason.OK),
    ("alice@notls.test", Verdict.DELIVERABLE, Reason.OK),
    ("alice@helo.test", Verdict.DELIVERABLE, Reason.OK),  # EHLO refused: HELO fallback
    ("alice@slow.test", Verdict.DELIVERABLE, Reason.OK),
    ("alice@amx.test", Verdict.DELIVERABLE, Reason.OK),
    ("alice@backup.test", Verdict.DELIVERABLE, Reason.OK),
    ("alice@nullmx.test", Verdict.UNDELIVERABLE, Reason.NULL_MX),
    ("alice@nomxhost.test", Verdict.UNDELIVERABLE, Reason.NO_MX_HOST),
    ("alice@nxdomain.test", Verdict.UNDELIVERABLE, Reason.NO_DOMAIN),
    # real servers' texts (issue #10)
    ("nobody@msft.test", Verdict.UNDELIVERABLE, Reason.MAILBOX_NOT_FOUND),
    ("alice@msft.test", Verdict.DELIVERABLE, Reason.OK),
    ("bob@msft.test", Verdict.DELIVERABLE, Reason.OK),
    ("nobody@qmail.test", Verdict.UNDELIVERABLE, Reason.MAILBOX_NOT_FOUND),
    ("alice@qmail.test", Verdict.DELIVERABLE, Reason.OK),
    ("nobody@exchange.test", Verdict.UNDELIVERABLE, Reason.MAILBOX_NOT_FOUND),
    ("storage@exchange.test", Verdict.UNKNOWN, Reason.SERVER_ERROR),
    ("nobody@gmail.test", Verdict.UNDELIVERABLE, Reason.MAILBOX_NOT_FOUND),
    ("alice@senderck.test", Verdict.DELIVERABLE, Reason.OK),  # our sender resolves
    ("alice@senderrcpt.test", Verdict.DELIVERABLE, Reason.OK),
    ("alice@tlsbroken.test", Verdict.DELIVERABLE, Reason.OK),  # again, without TLS
    ("alice@servfail.test", Verdict.UNKNOWN, Reason.DNS_ERROR),
    ("alice@dnsdrop.test", Verdict.UNKNOWN, Reason.DNS_ERROR),
    ("alice@bigtxt.test", Verdict.DELIVERABLE, Reason.OK),
    ("not an address", Verdict.UNDELIVERABLE, Reason.SYNTAX),
    ("alice@ok.test\r\nDATA", Verdict.UNDELIVERABLE, Reason.SYNTAX),
]


async def test_every_behaviour_gets_its_verdict(world: World) -> None:
    engine = Engine(config_for(world))
    results = await engine.verify_many([c[0] for c in CASES])
    got = {r.address: (r.verdict, r.reason) for r in results}
    assert got == {addr: (v, reason) for addr, v, reason in CASES}
    by = {r.address: r for r in results}
    assert by["alice@greylist.test"].temporary and by["alice@tarpit.test"].temporary
    assert not by["alice@blocked.test"].temporary
    assert by["alice@backup.test"].evidence.smtp is not None
    assert by["alice@backup.test"].evidence.smtp.mx_host == "mx2.backup.test"
    amx = by["alice@amx.test"].evidence.mx
    assert amx is not None and amx.implicit
    assert world.mx_stats("mx.tls.test").starttls >= 1
    assert by["storage@exchange.test"].temporary  # the server's trouble: ask again later
    assert by["alice@servfail.test"].temporary and by["alice@dnsdrop.test"].temporary
    big = by["alice@bigtxt.test"].evidence.spf  # 1.8 kB of TXT: TC over UDP, then TCP
    assert big is not None and big.status == "present" and big.all_qualifier == "-"
    import dns.asyncquery
    import dns.flags
    import dns.message

    host, port = world.nameserver.rsplit(":", 1)
    udp = await dns.asyncquery.udp(dns.message.make_query(
        "bigtxt.test", "TXT", use_edns=0, payload=1232), host, port=int(port), timeout=2)
    assert udp.flags & dns.flags.TC and not udp.answer  # so the SPF above came over TCP
    gmail = by["nobody@gmail.test"].evidence.smtp
    assert gmail is not None and gmail.reply is not None
    assert gmail.reply.message.count("5.1.1") == 0 and "double-checking" in gmail.reply.message


async def test_a_refused_sender_is_no_verdict_on_the_recipient(world: World) -> None:
    """A server that cannot resolve our MAIL FROM's domain refuses it (at MAIL, or at each
    RCPT as Postfix does by default): the mailbox is `unknown` with `sender_rejected`, not
    `mailbox_not_found`, and the evidence says what to change."""
    engine = Engine(config_for(world, mail_from="verify@mailsift.invalid"))
    results = await engine.verify_many(
        ["alice@senderck.test", "nobody@senderck.test", "alice@senderrcpt.test",
         "nobody@senderrcpt.test"])
    for r in results:
        assert (r.verdict, r.reason, r.temporary) == (
            Verdict.UNKNOWN, Reason.SENDER_REJECTED, False), r.address
        assert r.evidence.smtp is not None and r.evidence.smtp.error is not None
        assert "MAILSIFT_MAIL_FROM" in r.evidence.smtp.error
        assert "<verify@mailsift.invalid>" in r.evidence.smtp.error
    # refused at MAIL: the RCPTs pipelined behind it were answered 503, none was judged
    assert set(world.mx_stats("mx.senderck.test").rcpt_replies) <= {503}


async def test_one_recipient_per_transaction_is_learned_for_the_host(world: World) -> None:
    """Consumer Outlook answers a transaction's second RCPT with 452 4.5.3: a new
    transaction on the same connection is answered, so the limit is per transaction and
    the host gets one RCPT per transaction from then on, on one connection."""
    engine = Engine(config_for(world))
    addrs = ["alice@msft.test", "bob@msft.test", "carol@msft.test", "x1@msft.test",
             "x2@msft.test", "x3@msft.test"]
    results = await engine.verify_many(addrs)
    assert [r.reason for r in results] == [Reason.OK] * 3 + [Reason.MAILBOX_NOT_FOUND] * 3
    stats = world.mx_stats("mx.msft.test")
    assert stats.connections == 1
    told = stats.rcpt_replies[452]  # the pipelined RCPTs of the first transaction
    assert 1 <= told <= len(addrs)
    assert engine.pool.transaction_limit("127.0.1.18") == 1
    more = await engine.verify_many(["alice@msft.test", "x4@msft.test"])
    assert [r.reason for r in more] == [Reason.OK, Reason.MAILBOX_NOT_FOUND]
    assert world.mx_stats("mx.msft.test").rcpt_replies[452] == told  # remembered


async def test_auth_records_evidence(world: World) -> None:
    engine = Engine(config_for(world))
    ok, soft, bad, nodmarc = await engine.verify_many(
        ["alice@ok.test", "alice@spfsoft.test", "alice@spfbad.test", "alice@nodmarc.test"])
    ev = ok.evidence
    assert ev.spf is not None and ev.spf.status == "present" and ev.spf.all_qualifier == "-"
    assert ev.dmarc is not None and ev.dmarc.policy == "reject"
    assert ev.dkim is not None and ev.dkim.status == "present" and "google" in ev.dkim.selectors
    assert soft.evidence.spf is not None and soft.evidence.spf.all_qualifier == "~"
    assert bad.evidence.spf is not None and bad.evidence.spf.status == "invalid"
    assert nodmarc.evidence.dmarc is not None and nodmarc.evidence.dmarc.status == "absent"
    assert nodmarc.evidence.dkim is not None and nodmarc.evidence.dkim.status == "unknown"


async def test_spf_trees_and_organizational_dmarc(world: World) -> None:
    """The SPF tree is followed over real DNS; a subdomain without DMARC gets its
    organizational domain's sp= (and the score does not count it as missing)."""
    engine = Engine(config_for(world))
    tree, redir, over, news = await engine.verify_many(
        ["alice@spftree.test", "alice@spfredir.test", "alice@spfover.test",
         "alice@news.ok.test"])
    spf = tree.evidence.spf
    assert spf is not None and (spf.status, spf.lookups, spf.all_qualifier) == ("present", 3, "~")
    assert set(spf.followed) == {"_spf.esp.test", "_nb1.esp.test", "_nb2.esp.test"}
    assert redir.evidence.spf is not None and redir.evidence.spf.all_qualifier == "-"
    assert over.evidence.spf is not None and over.evidence.spf.status == "permerror"
    assert over.evidence.spf.error == "11 DNS-querying terms (RFC 7208 allows 10)"
    # -5 for the broken SPF, -5 for no DMARC
    assert (over.verdict, over.reason, over.score) == (Verdict.DELIVERABLE, Reason.OK, 90)
    dmarc = news.evidence.dmarc
    assert dmarc is not None
    assert (dmarc.status, dmarc.policy, dmarc.org_domain) == ("present", "quarantine", "ok.test")
    assert news.score == 100 and tree.score == 95  # an inherited DMARC is not missing


async def test_greylisted_address_resolves_after_the_delay(world: World) -> None:
    engine = Engine(config_for(world))
    first = await engine.verify("carol@greylist.test")
    assert (first.verdict, first.reason, first.temporary) == (
        Verdict.UNKNOWN, Reason.GREYLISTED, True)
    await asyncio.sleep(1.2)
    second = await engine.verify("carol@greylist.test")
    assert (second.verdict, second.reason) == (Verdict.DELIVERABLE, Reason.OK)


async def test_one_session_for_many_addresses_and_catch_all_probed_once(world: World) -> None:
    engine = Engine(config_for(world))
    addrs = ["alice@ok.test", "bob@ok.test", "carol@ok.test", "x1@ok.test", "x2@ok.test"]
    await engine.verify_many(addrs)
    stats = world.mx_stats("mx.ok.test")
    assert stats.connections == 1
    assert stats.rcpt == len(addrs) + 1  # + the catch-all probe
    await engine.verify_many(["alice@ok.test"])
    assert world.mx_stats("mx.ok.test").rcpt == len(addrs) + 2  # probe result was cached


async def test_reconnects_when_server_limits_recipients(world: World) -> None:
    engine = Engine(config_for(world))
    addrs = [f"user{i}@rcptlimit.test" for i in range(7)]
    results = await engine.verify_many(addrs)
    assert {r.reason for r in results} == {Reason.CATCH_ALL}
    assert world.mx_stats("mx.rcptlimit.test").connections >= 3


async def test_421_when_server_is_busy_is_temporary(world: World) -> None:
    reader, writer = await asyncio.open_connection("127.0.1.9", world.smtp_port)
    try:
        await reader.readline()  # hold busy.test's only slot
        result = await Engine(config_for(world)).verify("alice@busy.test")
        assert (result.verdict, result.reason, result.temporary) == (
            Verdict.UNKNOWN, Reason.GREYLISTED, True)
        assert result.evidence.smtp is not None and result.evidence.smtp.reply is not None
        assert result.evidence.smtp.reply.code == 421
    finally:
        writer.close()


async def test_politeness_limits_connections_and_rcpt_rate(world: World) -> None:
    engine = Engine(config_for(world, mx_max_connections=1, mx_rcpt_per_second=20.0,
                                rcpt_per_transaction=3))
    addrs = [f"{n}@shared{i}.test" for i in range(1, 6) for n in ("alice", "bob", "zed")]
    results = await engine.verify_many(addrs)
    assert {r.reason for r in results} == {Reason.OK, Reason.MAILBOX_NOT_FOUND}
    stats = world.mx_stats("mx.shared.test")
    assert stats.max_simultaneous == 1
    assert world.max_rcpt_rate("mx.shared.test", window=1.0) <= 21


async def test_private_mx_not_contacted_unless_allowed(world: World) -> None:
    engine = Engine(config_for(world, allowed_networks=()))
    result = await engine.verify("alice@ok.test")
    assert (result.verdict, result.reason) == (Verdict.UNKNOWN, Reason.MX_NOT_ALLOWED)
    assert world.mx_stats("mx.ok.test").connections == 0


async def test_dns_cache_spares_the_nameserver(world: World) -> None:
    engine = Engine(config_for(world))
    await engine.verify("alice@ok.test")
    before = world.dns_queries("ok.test", "MX")
    await engine.verify("bob@ok.test")
    assert world.dns_queries("ok.test", "MX") == before == 1


async def test_a_silent_or_failing_nameserver_stalls_no_other_domain(world: World) -> None:
    """A domain whose nameserver never answers waits out its DNS timeout; the domains
    checked beside it are done long before."""
    engine = Engine(config_for(world, dns_timeout=2.0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    done: dict[str, float] = {}

    async def timed(address: str) -> Reason:
        result = await engine.verify(address)
        done[address] = loop.time() - start
        return result.reason

    reasons = await asyncio.gather(*(timed(a) for a in (
        "carol@dnsdrop.test", "carol@servfail.test", "alice@ok.test", "alice@notls.test")))
    assert reasons == [Reason.DNS_ERROR, Reason.DNS_ERROR, Reason.OK, Reason.OK]
    assert done["carol@dnsdrop.test"] >= 1.5  # it did wait for its nameserver
    assert done["alice@ok.test"] < 1.0 and done["alice@notls.test"] < 1.0, done
    assert done["carol@servfail.test"] < 1.0, done  # a SERVFAIL is no timeout


async def test_a_broken_tls_handshake_is_retried_without_tls_and_remembered(
        world: World) -> None:
    """STARTTLS offered and accepted, then the handshake breaks: the same probe asks
    again on a new connection without TLS, and later sessions skip STARTTLS."""
    engine = Engine(config_for(world, smtp_idle_seconds=0.05))
    first = await engine.verify_many(["alice@tlsbroken.test", "nobody@tlsbroken.test"])
    assert [r.reason for r in first] == [Reason.OK, Reason.MAILBOX_NOT_FOUND]
    stats = world.mx_stats("mx.tlsbroken.test")
    assert (stats.connections, stats.tls_failures) == (2, 1)
    assert engine.pool.tls_broken("127.0.1.24")
    await asyncio.sleep(0.2)  # the pooled session is closed (idle)
    again = await engine.verify_many(["bob@tlsbroken.test"])
    assert again[0].reason is Reason.OK
    assert (stats.connections, stats.tls_failures) == (3, 1)  # no STARTTLS tried again
    assert stats.max_simultaneous == 1


@pytest.mark.parametrize(("mail_from", "warned"), [
    ("verify@ok.test", None),  # has an MX
    ("verify@amx.test", None),  # an A record only
    ("verify@nxdomain.test", "nxdomain.test does not resolve"),
    ("verify@mailsift.invalid", "mailsift.invalid does not resolve"),  # never asked
    ("", None),  # the null sender is never refused for its domain
])
async def test_config_warns_when_the_sender_domain_does_not_resolve(
        world: World, mail_from: str, warned: str | None) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MAILSIFT_MAIL_FROM": mail_from,
           "MAILSIFT_DNS_NAMESERVERS": world.nameserver}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "mailsift.cli.main", "config"], env=env,
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MAILSIFT_MAIL_FROM" in result.stdout  # the table
    if warned is None:
        assert result.stderr.strip() == ""
    else:
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("warning: MAILSIFT_MAIL_FROM=") and warned in line, line
        assert "sender_rejected" in line


async def test_check_retry_lists_every_attempt(world: World) -> None:
    """``mailsift check --retry --json``: a greylisted mailbox is asked again after
    MAILSIFT_RETRY_DELAYS and ends ``ok`` with both attempts and ``greylisted: true``
    in its evidence, like a verdict of the pipeline; one without retries has none."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **world.env(), "MAILSIFT_RETRY_DELAYS": "1.5,1.5",
           "MAILSIFT_MAIL_FROM": "verify@mailsift.test", "MAILSIFT_ALLOW_TEST_TLD": "true",
           "MAILSIFT_MX_ALLOWED_NETWORKS": "127.0.0.0/8"}
    argv = [sys.executable, "-m", "mailsift.cli.main", "check", "--json", "--retry",
            "carol@greylist.test", "alice@ok.test", "nobody@ok.test"]
    result = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True,
                                     text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    grey, ok, missing = (json.loads(line) for line in result.stdout.splitlines())
    assert (grey["verdict"], grey["reason"]) == ("deliverable", "ok")
    attempts = grey["evidence"]["attempts"]
    assert [(a["attempt"], a["reason"], a["smtp_code"]) for a in attempts] == [
        (1, "greylisted", 451), (2, "ok", 250)]
    # each attempt is stamped when it was the outcome: the first before the 1.5 s wait
    from datetime import datetime
    first, second = (datetime.fromisoformat(a["at"]) for a in attempts)
    assert (second - first).total_seconds() >= 1.4
    # no SPF, no DMARC, two attempts: 100 - 15
    assert grey["evidence"]["greylisted"] is True and grey["score"] == 85
    assert "attempts" not in ok["evidence"] and ok["score"] == 100
    assert missing["reason"] == "mailbox_not_found" and "attempts" not in missing["evidence"]
    assert "1 temporary outcome(s): asking again in 1.5 s" in result.stderr


# six domains on one "Google" MX host (a name the provider table knows, served by the world
# on loopback like every other record), every reply 50 ms late so their sessions overlap
GOOGLE = WorldSpec(
    zones=["test", "com"],
    records=[mx(f"gsuite{i}.test", 10, "aspmx.l.google.com") for i in range(6)],
    mx_hosts=[MxHost("127.0.1.41", "aspmx.l.google.com", mailboxes=mailboxes(["alice"]),
                     reply_delay=0.05)],
)


@pytest.mark.parametrize("policy", [None, ProviderPolicy(max_connections=1,
                                                         rcpt_per_second=4.0,
                                                         catch_all_probe=False)])
async def test_a_provider_policy_overrides_the_per_mx_limits(
        policy: ProviderPolicy | None) -> None:
    """``MAILSIFT_PROVIDER_LIMITS``: the MX hosts of a provider get its connection limit
    and RCPT rate instead of the per-MX default, and its domains no catch-all probe."""
    async with World(GOOGLE) as world:
        providers = {"google": policy} if policy is not None else {}
        engine = Engine(config_for(world, mx_max_connections=3, mx_rcpt_per_second=50.0,
                                   providers=providers))
        addrs = [f"{who}@gsuite{i}.test" for i in range(6) for who in ("alice", "nobody")]
        try:
            results = await engine.verify_many(addrs)
        finally:
            await engine.aclose()
        stats = world.mx_stats("aspmx.l.google.com")
        assert world.data_commands == 0
    assert [r.reason for r in results] == [Reason.OK, Reason.MAILBOX_NOT_FOUND] * 6
    assert {r.evidence.provider for r in results} == {"google"}
    if policy is None:
        assert stats.max_simultaneous > 1  # the default allows 3, and they overlap
        assert stats.rcpt == 12 + 6  # and every domain got its catch-all probe
        assert all(r.evidence.catch_all is False for r in results)
    else:
        assert stats.max_simultaneous == 1
        assert stats.rcpt == 12  # no catch-all probe
        assert stats.max_rcpt_rate() <= 4
        assert all(r.evidence.catch_all is None for r in results)
