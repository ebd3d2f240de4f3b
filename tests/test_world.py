"""Tests of the simulated mail world itself (tests/world), over real loopback sockets.

DNS is checked with dnspython queries (UDP and TCP), SMTP with aiosmtplib connecting to
the 127.0.1.X address of each MX host. The only place DATA/BDAT is ever sent is
:func:`test_data_and_bdat_are_counted_and_refused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import aiosmtplib
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import pytest_asyncio

from tests.world import (
    ADDRESSES,
    MxHost,
    World,
    WorldSpec,
    bulk_world,
    default_world,
    max_rate,
    merge,
    mx,
    txt,
)
from tests.world.default import DKIM_OK, DMARC_OK, SPF_OK

pytestmark = pytest.mark.world

REPO = Path(__file__).resolve().parent.parent
GREYLIST_SECONDS = 1.0


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    """The default world with a short greylist, started for one test."""
    async with World(default_world(greylist_seconds=GREYLIST_SECONDS)) as w:
        yield w


# --- helpers -----------------------------------------------------------------------


async def query(world: World, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    """One raw DNS query to the world's server."""
    q = dns.message.make_query(name, rdtype)
    host, port = world.dns_address
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, timeout=2)
    return await dns.asyncquery.udp(q, host, port=port, timeout=2)


def answer_texts(msg: dns.message.Message) -> list[str]:
    """Rdata of every answer record, as text."""
    return [rd.to_text() for rrset in msg.answer for rd in rrset]


async def smtp(world: World, host: str, *, timeout: float = 5.0) -> aiosmtplib.SMTP:
    """A connected aiosmtplib client to MX host ``host`` (no automatic STARTTLS)."""
    client = aiosmtplib.SMTP(
        hostname=ADDRESSES[host],
        port=world.smtp_port,
        timeout=timeout,
        start_tls=False,
        local_hostname="client.test",
    )
    await client.connect()
    return client


async def rcpt_code(client: aiosmtplib.SMTP, address: str) -> tuple[int, str]:
    """Reply to RCPT TO (refusals caught)."""
    try:
        resp = await client.rcpt(address)
    except aiosmtplib.SMTPRecipientRefused as exc:
        return exc.code, exc.message
    return resp.code, resp.message


async def eventually(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``pred()`` is true (server-side bookkeeping is asynchronous)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- DNS -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dns_mx_records_in_preference_order_udp_and_tcp(world: World) -> None:
    for tcp in (False, True):
        resp = await query(world, "backup.test", "MX", tcp=tcp)
        assert resp.rcode() == dns.rcode.NOERROR
        assert resp.flags & dns.flags.AA
        records = sorted((rd.preference, rd.exchange.to_text()) for rd in resp.answer[0])
        assert records == [(10, "mx1.backup.test."), (20, "mx2.backup.test.")]
    resp = await query(world, "mx1.backup.test", "A")
    assert answer_texts(resp) == ["127.0.1.13"]
    assert world.nameserver == f"127.0.2.1:{world.dns_address[1]}"


@pytest.mark.asyncio
async def test_dns_nxdomain_with_soa(world: World) -> None:
    for name in ("nxdomain.test", "mx.nomxhost.test"):
        resp = await query(world, name, "A")
        assert resp.rcode() == dns.rcode.NXDOMAIN, name
        assert not resp.answer
        assert resp.authority and resp.authority[0].rdtype == dns.rdatatype.SOA
        assert resp.authority[0].ttl == 60


@pytest.mark.asyncio
async def test_dns_nodata_and_refused(world: World) -> None:
    for name, rdtype in (("ok.test", "AAAA"), ("_domainkey.ok.test", "TXT"), ("ok.test", "A")):
        resp = await query(world, name, rdtype)
        assert resp.rcode() == dns.rcode.NOERROR, (name, rdtype)
        assert not resp.answer
        assert resp.authority[0].rdtype == dns.rdatatype.SOA
    resp = await query(world, "example.com", "MX")
    assert resp.rcode() == dns.rcode.REFUSED
    assert not resp.flags & dns.flags.AA


@pytest.mark.asyncio
async def test_dns_null_mx_implicit_mx_and_ttls(world: World) -> None:
    resp = await query(world, "nullmx.test", "MX")
    assert answer_texts(resp) == ["0 ."]
    resp = await query(world, "amx.test", "MX")
    assert resp.rcode() == dns.rcode.NOERROR and not resp.answer
    assert answer_texts(await query(world, "amx.test", "A")) == ["127.0.1.12"]
    assert answer_texts(await query(world, "nomxhost.test", "MX")) == ["10 mx.nomxhost.test."]
    assert (await query(world, "shortttl.test", "MX")).answer[0].ttl == 1
    assert (await query(world, "ok.test", "MX")).answer[0].ttl == 300


@pytest.mark.asyncio
async def test_dns_txt_spf_dmarc_dkim(world: World) -> None:
    def texts(msg: dns.message.Message) -> set[str]:
        return {b"".join(rd.strings).decode() for rrset in msg.answer for rd in rrset}

    ok = texts(await query(world, "ok.test", "TXT"))
    assert SPF_OK in ok and len(ok) == 2
    assert texts(await query(world, "_dmarc.ok.test", "TXT")) == {DMARC_OK}
    assert texts(await query(world, "google._domainkey.ok.test", "TXT")) == {DKIM_OK}
    assert texts(await query(world, "spfsoft.test", "TXT")) == {"v=spf1 ip4:127.0.1.1 ~all"}
    assert len(texts(await query(world, "spfmulti.test", "TXT"))) == 2
    resp = await query(world, "_dmarc.nodmarc.test", "TXT")
    assert resp.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.asyncio
async def test_dns_query_counter(world: World) -> None:
    assert world.dns_queries("ok.test", "MX") == 0
    for _ in range(3):
        await query(world, "ok.test", "MX")
    await query(world, "OK.test", "TXT")
    await query(world, "example.com", "A")
    assert world.dns_queries("ok.test", "MX") == 3
    assert world.dns_queries("ok.test") == 4
    assert world.dns_queries("example.com", "A") == 1
    assert world.stats()["dns"]["queries"]["ok.test/MX"] == 3
    world.reset_stats()
    assert world.dns_queries("ok.test", "MX") == 0
    assert world.stats()["dns"]["total"] == 0


@pytest.mark.asyncio
async def test_dns_truncation_latency_and_resolver() -> None:
    big = [txt("big.test", f"{i:02d}" + "x" * 200) for i in range(6)]
    spec = WorldSpec(records=[mx("big.test", 10, "mx.big.test"), *big], dns_latency=0.2)
    async with World(spec) as w:
        started = time.monotonic()
        udp = await query(w, "big.test", "TXT")
        assert time.monotonic() - started >= 0.19
        assert udp.flags & dns.flags.TC and not udp.answer
        tcp = await query(w, "big.test", "TXT", tcp=True)
        assert len(tcp.answer[0]) == 6
        answer = await w.resolver().resolve("big.test", "MX")
        assert [rd.exchange.to_text() for rd in answer] == ["mx.big.test."]


# --- SMTP ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mailbox_replies(world: World) -> None:
    client = await smtp(world, "mx.ok.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    expected = {
        "alice@ok.test": (250, "2.1.5"),
        "Bob@OK.test": (250, "2.1.5"),
        "nobody@ok.test": (550, "5.1.1"),
        "full@ok.test": (552, "5.2.2"),
        "fulltemp@ok.test": (452, "4.2.2"),
        "disabled@ok.test": (550, "5.2.1"),
    }
    for address, (code, enhanced) in expected.items():
        got_code, message = await rcpt_code(client, address)
        assert (got_code, message.split()[0]) == (code, enhanced), address
    assert (await client.vrfy("alice@ok.test")).code == 252
    assert (await client.noop()).code == 250
    assert (await client.rset()).code == 250
    await client.quit()
    stats = world.mx_stats("mx.ok.test")
    assert stats.rcpt == 6 and stats.mail == 1 and stats.connections == 1
    assert stats.rcpt_replies[250] == 2 and stats.rcpt_replies[550] == 2
    assert world.data_commands == 0


@pytest.mark.asyncio
async def test_catch_all_and_implicit_mx_and_backup(world: World) -> None:
    for host, address, code in (
        ("mx.catchall.test", "anything-at-all@catchall.test", 250),
        ("amx.test", "carol@amx.test", 250),
        ("mx2.backup.test", "alice@backup.test", 250),
        ("mx2.backup.test", "zed@backup.test", 550),
    ):
        client = await smtp(world, host)
        await client.ehlo()
        await client.mail("")
        assert (await rcpt_code(client, address))[0] == code, (host, address)
        await client.quit()
    for host in ("mx.refused.test", "mx1.backup.test"):
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await smtp(world, host)


@pytest.mark.asyncio
async def test_greylist_then_accept(world: World) -> None:
    client = await smtp(world, "mx.greylist.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    code, message = await rcpt_code(client, "alice@greylist.test")
    assert (code, message) == (451, "4.7.1 Greylisted, try again later")
    assert (await rcpt_code(client, "ALICE@greylist.test"))[0] == 451
    assert (await rcpt_code(client, "nobody@greylist.test"))[0] == 451
    await asyncio.sleep(GREYLIST_SECONDS + 0.1)
    assert (await rcpt_code(client, "alice@greylist.test"))[0] == 250
    assert (await rcpt_code(client, "nobody@greylist.test"))[0] == 550
    assert (await rcpt_code(client, "bob@greylist.test"))[0] == 451  # its own clock
    await client.quit()
    world.reset_greylist()
    client = await smtp(world, "mx.greylist.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    assert (await rcpt_code(client, "alice@greylist.test"))[0] == 451
    await client.quit()


@pytest.mark.asyncio
async def test_rcpt_limit_per_session(world: World) -> None:
    client = await smtp(world, "mx.rcptlimit.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    codes = [(await rcpt_code(client, f"u{i}@rcptlimit.test"))[0] for i in range(3)]
    assert codes == [250, 250, 250]
    assert await rcpt_code(client, "u3@rcptlimit.test") == (452, "4.5.3 Too many recipients")
    await client.rset()
    await client.mail("probe@client.test")
    assert (await rcpt_code(client, "u4@rcptlimit.test"))[0] == 452  # RSET does not reset
    await client.quit()
    client = await smtp(world, "mx.rcptlimit.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    assert (await rcpt_code(client, "u5@rcptlimit.test"))[0] == 250
    await client.quit()
    stats = world.mx_stats("mx.rcptlimit.test")
    assert stats.rcpt == 6
    assert world.max_rcpt_rate("mx.rcptlimit.test", 1.0) == 6
    assert world.max_rcpt_rate("mx.rcptlimit.test", 1e-9) == 1


@pytest.mark.asyncio
async def test_max_connections_gives_421(world: World) -> None:
    first = await smtp(world, "mx.busy.test")
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as info:
        await smtp(world, "mx.busy.test")
    assert info.value.code == 421
    assert "4.7.0 Too many connections" in info.value.message
    await first.quit()
    stats = world.mx_stats("mx.busy.test")
    await eventually(lambda: stats.current_connections == 0)
    again = await smtp(world, "mx.busy.test")
    await again.quit()
    assert stats.connections == 3 and stats.rejected_connections == 1
    assert stats.max_simultaneous == 2


@pytest.mark.asyncio
async def test_simultaneous_connections_are_tracked(world: World) -> None:
    clients = await asyncio.gather(*(smtp(world, "mx.shared.test") for _ in range(3)))
    stats = world.mx_stats("mx.shared.test")
    assert stats.current_connections == 3
    await asyncio.gather(*(c.quit() for c in clients))
    await eventually(lambda: stats.current_connections == 0)
    assert stats.max_simultaneous == 3
    snapshot = world.stats()["mx"]["mx.shared.test"]
    assert snapshot["connections"] == 3 and snapshot["address"] == "127.0.1.15"
    json.dumps(world.stats(include_times=True))


@pytest.mark.asyncio
async def test_starttls_required_then_works(world: World) -> None:
    client = await smtp(world, "mx.tls.test")
    await client.ehlo()
    assert client.supports_extension("starttls")
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
        await client.mail("probe@client.test")
    assert info.value.code == 530
    assert "5.7.0 Must issue a STARTTLS command first" in info.value.message
    await client.starttls(validate_certs=False)
    assert client.get_transport_info("sslcontext") is not None
    await client.ehlo()
    assert not client.supports_extension("starttls")
    assert (await client.mail("probe@client.test")).code == 250
    assert (await rcpt_code(client, "alice@tls.test"))[0] == 250
    await client.quit()
    assert world.mx_stats("mx.tls.test").starttls == 1

    plain = await smtp(world, "mx.notls.test")
    await plain.ehlo()
    assert not plain.supports_extension("starttls")
    await plain.quit()


@pytest.mark.asyncio
async def test_blocked_at_banner_and_at_rcpt(world: World) -> None:
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as info:
        await smtp(world, "mx.blocked.test")
    assert info.value.code == 554
    assert info.value.message.startswith("5.7.1 Service unavailable; client host [127.")
    assert info.value.message.endswith("blocked using zen.spamhaus.org")
    client = await smtp(world, "mx.blockedrcpt.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    code, message = await rcpt_code(client, "alice@blockedrcpt.test")
    assert code == 554 and "zen.spamhaus.org" in message
    await client.quit()


@pytest.mark.asyncio
async def test_tarpit_and_slow_replies(world: World) -> None:
    started = time.monotonic()
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await smtp(world, "mx.tarpit.test", timeout=0.3)
    assert time.monotonic() - started < 2
    client = await smtp(world, "mx.slow.test")
    started = time.monotonic()
    await client.noop()
    assert time.monotonic() - started >= 0.29
    await client.quit()


@pytest.mark.asyncio
async def test_global_latency_applies_to_every_reply() -> None:
    spec = WorldSpec(
        records=[mx("lat.test", 10, "mx.lat.test")],
        mx_hosts=[MxHost(address="127.0.1.200", hostname="mx.lat.test", catch_all=True)],
        latency=0.1,
    )
    async with World(spec) as w:
        client = aiosmtplib.SMTP(
            hostname="127.0.1.200", port=w.smtp_port, timeout=5, start_tls=False
        )
        started = time.monotonic()
        await client.connect()
        await client.noop()
        assert time.monotonic() - started >= 0.19  # banner + NOOP, possibly + EHLO
        await client.quit()


@pytest.mark.asyncio
async def test_raw_protocol_edges(world: World) -> None:
    reader, writer = await asyncio.open_connection(ADDRESSES["mx.ok.test"], world.smtp_port)
    try:
        assert (await reader.readline()).startswith(b"220 mx.ok.test")
        for line, expect in (
            (b"MAIL FROM:<a@b.test>", b"503 5.5.1"),
            (b"X" * 1200, b"500 5.5.2 Line too long"),
            (b"FROB", b"500 5.5.2"),
            (b"HELO client.test", b"250 mx.ok.test"),
            (b"RCPT TO:<alice@ok.test>", b"503 5.5.1"),
            (b"MAIL FROM:a@b.test", b"501 5.5.4"),
            (b"MAIL FROM:<a@b.test> SIZE=10", b"250 2.1.0"),
            (b"MAIL FROM:<a@b.test>", b"503 5.5.1 Nested"),
            (b"QUIT", b"221 2.0.0"),
        ):
            writer.write(line + b"\r\n")
            assert (await reader.readline()).startswith(expect), line[:40]
        assert await reader.read() == b""
    finally:
        writer.close()
    assert world.data_commands == 0


@pytest.mark.asyncio
async def test_data_and_bdat_are_counted_and_refused(world: World) -> None:
    """The only test that sends DATA (and BDAT): the counters must see them."""
    client = await smtp(world, "mx.ok.test")
    await client.ehlo()
    await client.mail("probe@client.test")
    await client.rcpt("alice@ok.test")
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await client.data("Subject: hi\r\n\r\nhello\r\n")
    assert info.value.code == 554 and info.value.message.startswith("5.7.1")
    await client.quit()
    assert world.data_commands == 1

    reader, writer = await asyncio.open_connection(ADDRESSES["mx.shared.test"], world.smtp_port)
    try:
        await reader.readline()
        writer.write(b"EHLO client.test\r\nBDAT 5 LAST\r\nhelloNOOP\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        assert (await reader.readline()).startswith(b"554 5.7.1")
        assert (await reader.readline()).startswith(b"250 2.0.0")  # still in sync
    finally:
        writer.close()
    assert world.data_commands == 2
    assert world.mx_stats("mx.shared.test").data == 1
    assert world.stats()["data_commands"] == 2


# --- spec helpers ---------------------------------------------------------------------


def test_max_rate_sliding_window() -> None:
    assert max_rate([], 1.0) == 0
    assert max_rate([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert max_rate([5.0, 0.0, 0.1, 0.2, 0.3], 1.0) == 4


def test_spec_rejects_non_loopback_and_bulk_world_shape() -> None:
    bad = WorldSpec(mx_hosts=[MxHost(address="10.0.0.1", hostname="mx.bad.test")])
    with pytest.raises(ValueError):
        World(bad)
    spec = bulk_world(10, mailboxes_per_domain=3, mx_hosts=4, latency=0.02)
    assert len(spec.mx_hosts) == 4 and spec.latency == 0.02
    assert spec.mx_hosts[0].address == "127.0.3.1"
    assert spec.mx_hosts[1].reply_for("user2@bulk1.test").code == 250
    assert spec.mx_hosts[1].reply_for("user3@bulk1.test").code == 550
    merged = merge(default_world(), spec)
    assert len(merged.mx_hosts) == len(default_world().mx_hosts) + 4


# --- subprocess mode ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_subprocess_mode() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.world",
        "--bulk",
        "20",
        "--latency-ms",
        "5",
        "--greylist-seconds",
        "1",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        ready = json.loads(line)
        assert set(ready) >= {"nameserver", "smtp_port", "control"}
        host, _, port = ready["nameserver"].partition(":")
        assert host == "127.0.2.1"
        q = dns.message.make_query("bulk7.test", "MX")
        resp = await dns.asyncquery.udp(q, host, port=int(port), timeout=2)
        assert answer_texts(resp) == ["10 mx3.bulk.test."]

        client = aiosmtplib.SMTP(
            hostname="127.0.3.4", port=ready["smtp_port"], timeout=5, start_tls=False
        )
        await client.connect()
        await client.ehlo()
        await client.mail("probe@client.test")
        assert (await rcpt_code(client, "user0@bulk7.test"))[0] == 250
        await client.quit()

        async with aiohttp.ClientSession() as http:
            async with http.get(ready["control"] + "/stats") as r:
                assert r.status == 200
                stats = await r.json()
            assert stats["dns"]["queries"]["bulk7.test/MX"] == 1
            assert stats["mx"]["mx3.bulk.test"]["rcpt"] == 1
            assert stats["data_commands"] == 0
            async with http.post(ready["control"] + "/reset") as r:
                assert r.status == 200
            async with http.get(ready["control"] + "/stats") as r:
                stats = await r.json()
            assert stats["mx"]["mx3.bulk.test"]["rcpt"] == 0
            assert stats["dns"]["total"] == 0

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
