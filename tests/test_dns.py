"""checks.dns: the caching layer (fake resolver, fake clock) and DnspythonResolver against
a tiny authoritative DNS server started here on 127.0.0.1 (UDP + TCP, ephemeral port).

No test sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
import pytest_asyncio

from checks import Engine, EngineConfig
from checks.authrecords import lookup_dmarc
from checks.dns import (
    CachingResolver,
    DnsAnswer,
    DnsError,
    DnsFailure,
    DnspythonResolver,
    MemoryDnsCache,
    NoData,
    NxDomain,
    cache_key,
)
from checks.model import MxHost, MxStatus
from checks.mx import resolve_mx
from checks.spf import lookup_spf
from tests.garbage import cyclic_garbage

# =========================================================================== caching


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingResolver:
    """Answers from a dict; counts how often each question reached it."""

    def __init__(self, data: dict[tuple[str, str], DnsAnswer | Exception]) -> None:
        self.data = data
        self.calls: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.calls.append((name, rdtype))
        value = self.data[(name.lower().rstrip("."), rdtype)]
        if isinstance(value, Exception):
            raise value
        return value


def caching(
    data: dict[tuple[str, str], DnsAnswer | Exception],
    min_ttl: float = 60.0,
    max_ttl: float = 86_400.0,
    negative_ttl: float = 300.0,
    local_entries: int = 50_000,
) -> tuple[CachingResolver, CountingResolver, MemoryDnsCache, Clock]:
    clock = Clock()
    inner = CountingResolver(data)
    cache = MemoryDnsCache(clock=clock)
    r = CachingResolver(inner, cache, min_ttl=min_ttl, max_ttl=max_ttl,
                        negative_ttl=negative_ttl, clock=clock, local_entries=local_entries)
    return r, inner, cache, clock


@pytest.mark.asyncio
async def test_positive_answer_cached_for_its_ttl_and_counted() -> None:
    answer = DnsAnswer(("10 mx.example.com.",), 300)
    r, inner, _, clock = caching({("example.com", "MX"): answer})
    assert await r.query("example.com", "MX") == answer
    assert (r.hits, r.misses) == (0, 1)
    clock.now += 100
    again = await r.query("EXAMPLE.com.", "MX")  # same key
    assert again.records == answer.records
    assert again.ttl == 200  # remaining TTL
    assert (r.hits, r.misses) == (1, 1)
    assert len(inner.calls) == 1
    clock.now += 200  # expired
    assert (await r.query("example.com", "MX")).ttl == 300
    assert len(inner.calls) == 2
    assert (r.hits, r.misses) == (1, 2)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("ttl", "kept"), [(0, 60), (5, 60), (60, 60), (3600, 3600), (10**7, 86_400)]
)
async def test_positive_ttl_is_clamped(ttl: int, kept: int) -> None:
    r, inner, _, clock = caching(
        {("a.example", "A"): DnsAnswer(("192.0.2.1",), ttl)}, min_ttl=60, max_ttl=86_400
    )
    await r.query("a.example", "A")
    clock.now += kept - 0.5
    await r.query("a.example", "A")
    assert len(inner.calls) == 1, "still cached just before the clamped TTL"
    clock.now += 1
    await r.query("a.example", "A")
    assert len(inner.calls) == 2, "expired just after the clamped TTL"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exc", "kept"),
    [
        (NxDomain("nx", ttl=None), 300),  # no SOA: negative_ttl
        (NxDomain("nx", ttl=5), 60),  # clamped up to min_ttl
        (NxDomain("nx", ttl=120), 120),  # the SOA's value
        (NxDomain("nx", ttl=86_400), 300),  # capped at negative_ttl
        (NoData("nd", ttl=None), 300),
        (NoData("nd", ttl=90), 90),
        (NoData("nd", ttl=999_999), 300),
    ],
)
async def test_negative_answers_cached_briefly(exc: DnsError, kept: int) -> None:
    r, inner, _, clock = caching(
        {("n.example", "MX"): exc}, min_ttl=60, max_ttl=86_400, negative_ttl=300
    )
    with pytest.raises(type(exc)):
        await r.query("n.example", "MX")
    clock.now += kept - 0.5
    with pytest.raises(type(exc)) as info:
        await r.query("n.example", "MX")
    assert len(inner.calls) == 1 and r.hits == 1
    assert str(info.value) == str(exc)
    assert isinstance(info.value, (NxDomain, NoData)) and info.value.ttl == 0
    clock.now += 1
    with pytest.raises(type(exc)):
        await r.query("n.example", "MX")
    assert len(inner.calls) == 2


@pytest.mark.asyncio
async def test_failures_are_never_cached() -> None:
    r, inner, cache, _ = caching({("f.example", "A"): DnsFailure("timeout")})
    for _ in range(3):
        with pytest.raises(DnsFailure):
            await r.query("f.example", "A")
    assert len(inner.calls) == 3
    assert cache.size == 0
    assert (r.hits, r.misses) == (0, 3)


@pytest.mark.asyncio
async def test_entries_are_json_and_corrupt_entries_are_misses() -> None:
    # the shared cache's own behaviour, without the in-process one
    r, inner, cache, _ = caching({("j.example", "TXT"): DnsAnswer(("v=spf1 -all",), 600)},
                                 local_entries=0)
    await r.query("j.example", "TXT")
    raw = await cache.get(cache_key("j.example", "TXT"))
    assert raw is not None and raw.startswith(b"{") and b"v=spf1 -all" in raw
    await cache.set(cache_key("j.example", "TXT"), b"\xff not json", 600)
    assert (await r.query("j.example", "TXT")).records == ("v=spf1 -all",)
    assert len(inner.calls) == 2 and r.hits == 0


@pytest.mark.asyncio
async def test_memory_cache_expiry_and_eviction() -> None:
    clock = Clock()
    cache = MemoryDnsCache(max_entries=3, clock=clock)
    await cache.set("a", b"1", 10)
    await cache.set("b", b"2", 100)
    await cache.set("c", b"3", 100)
    await cache.set("d", b"4", 100)  # full: the oldest ("a") goes
    assert await cache.get("a") is None
    assert await cache.get("b") == b"2"
    clock.now += 50
    await cache.set("b", b"2", 10)  # refreshed: now newest, expires at +60
    clock.now += 20  # "b" expired
    await cache.set("e", b"5", 100)  # full: the expired "b" goes first
    assert [await cache.get(k) for k in "bcde"] == [None, b"3", b"4", b"5"]
    assert cache.size == 3
    await cache.set("c", b"x", 0)  # ttl 0 deletes
    assert await cache.get("c") is None


# =========================================================================== a tiny DNS server

ORIGIN = "example.test."
BIG_TXT = "x" * 200
ZONE = f"""
$TTL 300
@        3600 IN SOA ns1 hostmaster 1 7200 900 1209600 120
@             IN NS   ns1
ns1           IN A    127.0.0.1
@         600 IN MX   10 mx1
@         600 IN MX   20 MX2
@             IN TXT  "v=spf1 " "ip4:192.0.2.0/24 -all"
@             IN TXT  "hello"
_dmarc        IN TXT  "v=DMARC1; p=quarantine; rua=mailto:d@example.test"
mx1           IN A    192.0.2.10
mx1           IN AAAA 2001:db8::10
mx2           IN A    192.0.2.20
nomx          IN A    192.0.2.30
alias      60 IN CNAME mx1
utf8          IN TXT  "caf\\195\\169 \\255!"
big           IN TXT  {" ".join(f'"{BIG_TXT}"' for _ in range(8))}
"""


@dataclass
class Seen:
    qname: str
    qtype: str
    transport: str
    edns: int
    payload: int


@dataclass
class TinyDns:
    """An authoritative server for ``example.test`` (SERVFAIL for ``servfail.``, REFUSED
    outside the zone, TC for UDP answers over the client's buffer)."""

    zone: dns.zone.Zone
    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        question = query.question[0]
        self.seen.append(Seen(question.name.to_text().lower(),
                              dns.rdatatype.to_text(question.rdtype), transport,
                              query.edns, query.payload))
        response = dns.message.make_response(query)
        origin = self.zone.origin
        assert origin is not None
        qname = question.name
        if not qname.is_subdomain(origin):
            response.set_rcode(dns.rcode.REFUSED)
        elif qname == dns.name.from_text("servfail", origin):
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            response.flags |= dns.flags.AA
            self._fill(response, qname, question.rdtype)
        max_size = 65535 if transport == "tcp" else (query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC | dns.flags.AA
            return truncated.to_wire()

    def _fill(self, response: dns.message.Message, qname: dns.name.Name,
              rdtype: dns.rdatatype.RdataType) -> None:
        for _ in range(8):  # follow CNAMEs inside the zone
            node = self.zone.get_node(qname)
            if node is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                break
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                response.answer.append(_rrset(qname, rdataset))
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                break  # NODATA
            response.answer.append(_rrset(qname, cname))
            qname = cname[0].target
        origin = self.zone.origin
        assert origin is not None
        soa = self.zone.get_rdataset(origin, dns.rdatatype.SOA)
        assert soa is not None
        response.authority.append(_rrset(origin, soa))


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: TinyDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _tcp_session(server: TinyDns, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            reply = server.answer(await reader.readexactly(length), "tcp")
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest_asyncio.fixture
async def tiny_dns() -> AsyncIterator[TinyDns]:
    server = TinyDns(dns.zone.from_text(ZONE, origin=ORIGIN, relativize=False))
    loop = asyncio.get_running_loop()
    for _ in range(20):  # UDP and TCP on the same ephemeral port
        udp, _proto = await loop.create_datagram_endpoint(
            lambda: _Udp(server), local_addr=("127.0.0.1", 0))
        port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(
                lambda r, w: _tcp_session(server, r, w), "127.0.0.1", port)
        except OSError:
            udp.close()
            continue
        break
    else:  # pragma: no cover
        raise RuntimeError("no free port pair on 127.0.0.1")
    server.port = port
    try:
        yield server
    finally:
        udp.close()
        tcp.close()
        await tcp.wait_closed()


@pytest.fixture
def silent_udp() -> Iterator[int]:
    """A bound loopback UDP port that never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def resolver_for(server: TinyDns, timeout: float = 2.0) -> DnspythonResolver:
    return DnspythonResolver([("127.0.0.1", server.port)], timeout=timeout)


# =========================================================================== real sockets


@pytest.mark.asyncio
async def test_mx_answer(tiny_dns: TinyDns) -> None:
    answer = await resolver_for(tiny_dns).query("example.test", "MX")
    # presentation text as served (case kept); resolve_mx lower-cases
    assert sorted(answer.records) == ["10 mx1.example.test.", "20 MX2.example.test."]
    assert answer.ttl == 600
    last = tiny_dns.seen[-1]
    assert (last.qname, last.qtype, last.transport) == ("example.test.", "MX", "udp")
    assert last.edns == 0 and last.payload == 1232  # EDNS on


@pytest.mark.asyncio
async def test_txt_answers_join_strings_and_decode(tiny_dns: TinyDns) -> None:
    r = resolver_for(tiny_dns)
    txt = await r.query("example.test", "TXT")
    assert sorted(txt.records) == ["hello", "v=spf1 ip4:192.0.2.0/24 -all"]
    assert txt.ttl == 300
    assert (await r.query("utf8.example.test", "TXT")).records == ("café \ufffd!",)


@pytest.mark.asyncio
async def test_a_aaaa_and_cname(tiny_dns: TinyDns) -> None:
    r = resolver_for(tiny_dns)
    assert await r.query("MX1.Example.Test.", "A") == DnsAnswer(("192.0.2.10",), 300)
    assert await r.query("mx1.example.test", "AAAA") == DnsAnswer(("2001:db8::10",), 300)
    # a CNAME is followed; the TTL is the smallest along the chain
    assert await r.query("alias.example.test", "A") == DnsAnswer(("192.0.2.10",), 60)


@pytest.mark.asyncio
async def test_nxdomain_carries_the_negative_ttl(tiny_dns: TinyDns) -> None:
    with pytest.raises(NxDomain) as info:
        await resolver_for(tiny_dns).query("missing.example.test", "MX")
    assert info.value.ttl == 120  # min(SOA TTL 3600, SOA MINIMUM 120)
    assert "NXDOMAIN" in str(info.value)


@pytest.mark.asyncio
async def test_negative_answers_leave_no_cyclic_garbage(tiny_dns: TinyDns) -> None:
    """NXDOMAIN and NODATA are the common answers (DKIM selectors, DMARC): an error that
    closed a reference cycle (a future holding it, dnspython's error as its context) left
    its frames and messages to the cyclic collector, whose pauses in a busy worker took
    up to 200 ms and made RCPT permits late. Asked, from the cache and from single-flight
    waiters, they are freed as they go."""
    shared = MemoryDnsCache()
    r = CachingResolver(resolver_for(tiny_dns), shared)
    other = CachingResolver(resolver_for(tiny_dns), shared)  # another worker's
    names = [(f"missing{i}.example.test", "MX") for i in range(3)] + [
        ("nomx.example.test", "MX")]

    async def ask(name: str, rdtype: str, resolver: CachingResolver = r) -> None:
        try:
            await resolver.query(name, rdtype)
        except (NxDomain, NoData):
            pass

    with cyclic_garbage() as found:
        for name, rdtype in names:
            await asyncio.gather(ask(name, rdtype), ask(name, rdtype))  # one waits
            await ask(name, rdtype)  # from the cache
        for name, rdtype in names:
            await ask(name, rdtype, other)  # from the shared cache
    errors = [o for o in found if isinstance(o, BaseException)]
    assert errors == []


@pytest.mark.asyncio
async def test_nodata_carries_the_negative_ttl(tiny_dns: TinyDns) -> None:
    with pytest.raises(NoData) as info:
        await resolver_for(tiny_dns).query("nomx.example.test", "MX")
    assert info.value.ttl == 120
    assert not isinstance(info.value, NxDomain)


@pytest.mark.asyncio
async def test_servfail_and_refused_are_failures(tiny_dns: TinyDns) -> None:
    r = resolver_for(tiny_dns)
    with pytest.raises(DnsFailure, match="SERVFAIL"):
        await r.query("servfail.example.test", "A")
    with pytest.raises(DnsFailure, match="REFUSED"):
        await r.query("elsewhere.invalid", "A")


@pytest.mark.asyncio
async def test_names_are_absolute_no_search_domain(tiny_dns: TinyDns) -> None:
    with pytest.raises(DnsFailure):
        await resolver_for(tiny_dns).query("mx1", "A")
    assert [s.qname for s in tiny_dns.seen] == ["mx1."]


@pytest.mark.asyncio
async def test_truncated_udp_answer_is_retried_over_tcp(tiny_dns: TinyDns) -> None:
    answer = await resolver_for(tiny_dns).query("big.example.test", "TXT")
    assert answer.records == (BIG_TXT * 8,)
    assert [s.transport for s in tiny_dns.seen] == ["udp", "tcp"]


@pytest.mark.asyncio
async def test_invalid_name_fails_without_traffic(tiny_dns: TinyDns) -> None:
    with pytest.raises(DnsFailure, match="invalid name"):
        await resolver_for(tiny_dns).query("a" * 64 + ".example.test", "A")
    assert tiny_dns.seen == []


@pytest.mark.asyncio
async def test_timeout_when_nothing_answers(silent_udp: int) -> None:
    r = DnspythonResolver([("127.0.0.1", silent_udp)], timeout=0.6)
    started = time.monotonic()
    with pytest.raises(DnsFailure) as info:
        await r.query("example.test", "A")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.2, elapsed
    assert str(info.value).startswith("timeout")
    assert f"127.0.0.1:{silent_udp}" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(("in_flight", "rounds"), [(2, 3), (6, 1)])
async def test_queries_past_the_in_flight_limit_wait_their_turn(
        silent_udp: int, in_flight: int, rounds: int) -> None:
    """Six lookups against a nameserver that never answers, at most ``in_flight`` at a
    time: they time out in ``rounds`` waves, each after its own full timeout (the wait
    for a turn is not counted against it)."""
    r = DnspythonResolver([("127.0.0.1", silent_udp)], timeout=0.3,
                          max_in_flight=in_flight)
    started = time.monotonic()
    failures = await asyncio.gather(*(r.query(f"n{i}.example.test", "A") for i in range(6)),
                                    return_exceptions=True)
    elapsed = time.monotonic() - started
    assert all(isinstance(f, DnsFailure) and str(f).startswith("timeout") for f in failures)
    # dnspython overshoots a lifetime by up to about two thirds of it
    assert 0.3 * rounds - 0.05 <= elapsed < 0.55 * rounds + 0.3, elapsed
    with pytest.raises(ValueError):
        DnspythonResolver([("127.0.0.1", 53)], max_in_flight=0)


def test_a_resolver_used_by_two_event_loops_limits_each(silent_udp: int) -> None:
    """A CLI may run several event loops over one engine: the limit of the first loop
    (with waiters on it) must not break the second."""
    r = DnspythonResolver([("127.0.0.1", silent_udp)], timeout=0.2, max_in_flight=1)

    async def two() -> list[BaseException | None]:
        return await asyncio.gather(r.query("a.example.test", "A"),
                                    r.query("b.example.test", "A"), return_exceptions=True)

    for _ in range(2):
        assert all(isinstance(f, DnsFailure) for f in asyncio.run(two()))


@pytest.mark.asyncio
async def test_second_nameserver_answers_when_first_is_silent(
    silent_udp: int, tiny_dns: TinyDns
) -> None:
    r = DnspythonResolver([("127.0.0.1", silent_udp), ("127.0.0.1", tiny_dns.port)],
                          timeout=2.0)
    started = time.monotonic()
    assert (await r.query("mx2.example.test", "A")).records == ("192.0.2.20",)
    assert time.monotonic() - started < 2.0


@pytest.mark.asyncio
async def test_closed_port_is_a_failure() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    started = time.monotonic()
    with pytest.raises(DnsFailure):
        await DnspythonResolver([("127.0.0.1", port)], timeout=1.0).query("example.test", "A")
    assert time.monotonic() - started < 1.5


def test_resolver_configuration() -> None:
    r = DnspythonResolver([("127.0.0.1", 5353), ("127.0.0.2", 53)], timeout=4.0)
    assert r.nameservers == (("127.0.0.1", 5353), ("127.0.0.2", 53))
    assert r.timeout == 4.0
    with pytest.raises(ValueError):
        DnspythonResolver([("127.0.0.1", 53)], timeout=0)


@pytest.mark.asyncio
async def test_end_to_end_mx_spf_dmarc_through_the_cache(tiny_dns: TinyDns) -> None:
    r = CachingResolver(resolver_for(tiny_dns), MemoryDnsCache())
    mx = await resolve_mx(r, "Example.Test")
    assert mx.status is MxStatus.OK
    assert mx.hosts == (
        MxHost(10, "mx1.example.test", ("192.0.2.10", "2001:db8::10")),
        MxHost(20, "mx2.example.test", ("192.0.2.20",)),
    )
    implicit = await resolve_mx(r, "nomx.example.test")
    assert implicit.implicit and implicit.hosts == (
        MxHost(0, "nomx.example.test", ("192.0.2.30",)),)
    assert (await resolve_mx(r, "missing.example.test")).status is MxStatus.NO_DOMAIN
    assert (await resolve_mx(r, "servfail.example.test")).status is MxStatus.DNS_ERROR
    assert (await lookup_spf(r, "example.test")).all_qualifier == "-"
    assert (await lookup_dmarc(r, "example.test")).policy == "quarantine"

    asked = len(tiny_dns.seen)
    await resolve_mx(r, "example.test")
    await resolve_mx(r, "missing.example.test")
    await resolve_mx(r, "nomx.example.test")
    assert len(tiny_dns.seen) == asked, "answers, NXDOMAIN and NODATA came from the cache"
    await resolve_mx(r, "servfail.example.test")
    assert len(tiny_dns.seen) == asked + 1, "failures are asked again"


class SlowResolver:
    def __init__(self, inner: CountingResolver) -> None:
        self.inner = inner

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        await asyncio.sleep(0.05)
        return await self.inner.query(name, rdtype)


@pytest.mark.asyncio
async def test_concurrent_misses_of_one_question_make_one_lookup() -> None:
    r, inner, _, _ = caching({("s.example", "MX"): DnsAnswer(("10 mx.s.example.",), 300),
                              ("n.example", "TXT"): NxDomain("n.example: no such domain")})
    r.resolver = SlowResolver(inner)  # the lookup takes time: the others arrive meanwhile
    answers = await asyncio.gather(*(r.query("s.example", "MX") for _ in range(20)))
    assert {a.records for a in answers} == {("10 mx.s.example.",)}
    results = await asyncio.gather(*(r.query("n.example", "TXT") for _ in range(20)),
                                   return_exceptions=True)
    assert all(isinstance(x, NxDomain) for x in results)
    assert len(inner.calls) == 2  # one per question, the rest waited for it


@pytest.mark.asyncio
async def test_in_process_cache_answers_without_the_shared_cache() -> None:
    r, inner, cache, clock = caching({("l.example", "A"): DnsAnswer(("127.0.0.9",), 120)})
    await r.query("l.example", "A")
    await cache.set(cache_key("l.example", "A"), b"", 0)  # the shared entry is gone
    assert (await r.query("l.example", "A")).records == ("127.0.0.9",)
    assert len(inner.calls) == 1
    clock.now += 121
    await r.query("l.example", "A")  # expired in both: asked again
    assert len(inner.calls) == 2


@pytest.mark.asyncio
async def test_a_waiter_survives_the_cancellation_of_the_lookup_it_waited_for() -> None:
    r, inner, _, _ = caching({("c.example", "MX"): DnsAnswer(("10 mx.c.example.",), 300)})
    r.resolver = SlowResolver(inner)
    owner = asyncio.create_task(r.query("c.example", "MX"))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(r.query("c.example", "MX"))
    await asyncio.sleep(0.01)
    owner.cancel()
    assert (await waiter).records == ("10 mx.c.example.",)  # asked again by itself
    assert owner.cancelled()


@pytest.mark.asyncio
async def test_cached_negative_answers_hold_no_traceback() -> None:
    r, _, _, _ = caching({("gone.example", "TXT"): NxDomain("gone.example: no such domain")})
    for _ in range(2):
        with pytest.raises(NxDomain):
            await r.query("gone.example", "TXT")
    cached = r._local.get(cache_key("gone.example", "TXT"))
    assert cached is not None and isinstance(cached[0], NxDomain)
    assert cached[0].__traceback__ is None


# --- domain facts kept per domain ---------------------------------------------------------


def _facts_engine(data: dict[tuple[str, str], list[str] | Exception]
                  ) -> tuple[Engine, list[float], list[int]]:
    """An engine over ``data`` with a fake clock for its facts, and a count of the DNS
    questions that reached its caching resolver."""
    from tests.fakes import FakeResolver

    engine = Engine(EngineConfig(allow_test_tld=True), resolver=FakeResolver(data))
    now = [0.0]
    engine._facts._clock = lambda: now[0]
    asked = engine.resolver.query
    queries = [0]

    async def counted(name: str, rdtype: str) -> DnsAnswer:
        queries[0] += 1
        return await asked(name, rdtype)

    engine.resolver.query = counted  # type: ignore[method-assign]
    return engine, now, queries


FACTS = {("ok.test", "MX"): ["10 mx.ok.test."], ("mx.ok.test", "A"): ["127.0.0.1"],
         ("ok.test", "TXT"): ["v=spf1 -all"], ("_dmarc.ok.test", "TXT"): ["v=DMARC1; p=none"]}


@pytest.mark.asyncio
async def test_domain_facts_are_one_lookup_for_their_shortest_ttl() -> None:
    engine, now, queries = _facts_engine(dict(FACTS))
    first = await engine.domain_facts("ok.test")
    asked = queries[0]
    again = await engine.domain_facts("ok.test")
    assert queries[0] == asked  # not one cached query
    assert again.mx.hosts == first.mx.hosts and again.spf == first.spf
    assert again.seconds == 0.0
    assert engine.resolver.hits >= 1  # reported as a cache hit
    # the DKIM lookup said NXDOMAIN (negative TTL 60) and the rest 300 s: kept 60 s
    now[0] = 59.0
    await engine.domain_facts("ok.test")
    assert queries[0] == asked
    now[0] = 61.0
    await engine.domain_facts("ok.test")
    assert queries[0] > asked


@pytest.mark.asyncio
async def test_domain_facts_from_a_failed_lookup_are_not_kept() -> None:
    engine, _, queries = _facts_engine({**FACTS, ("ok.test", "TXT"): DnsFailure("SERVFAIL")})
    await engine.domain_facts("ok.test")
    asked = queries[0]
    await engine.domain_facts("ok.test")
    assert queries[0] > asked
