"""An authoritative DNS server for the simulated mail world (dnspython + asyncio).

It answers over UDP *and* TCP on the same loopback address and port:

* records of the spec (A, AAAA, MX, TXT, ... each rrset with its own TTL — when records
  of one rrset disagree the smallest TTL wins), authoritative (AA flag);
* ``NXDOMAIN`` with the zone SOA in the authority section for a name inside a served
  zone that has no record (empty non-terminals such as ``_domainkey.ok.test`` exist);
* ``NOERROR`` with no answer (NODATA) and the SOA when the name exists but not the type;
* ``REFUSED`` for a name outside the served zones;
* UDP answers larger than the client's buffer (512, or its EDNS size) come back with TC;
* ``SERVFAIL`` for the spec's ``servfail`` names, and no answer at all (over UDP and
  TCP) for its ``silent`` names.

Every query is counted per ``(qname, qtype)`` (:class:`DnsStats`), so cache tests can
assert how often a name was really asked. An optional latency delays every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from .spec import Record, WorldSpec, normalize_name

__all__ = ["DnsServer", "DnsStats", "build_rdata"]

log = logging.getLogger(__name__)

_SOA_TTL = 3600
_MAX_BIND_ATTEMPTS = 20


class DnsStats:
    """Query counters per ``(qname, qtype)``; qname lower-case without trailing dot."""

    def __init__(self) -> None:
        self.queries: Counter[tuple[str, str]] = Counter()

    def record(self, qname: str, qtype: str) -> None:
        """Count one query."""
        self.queries[(normalize_name(qname), qtype.upper())] += 1

    def count(self, qname: str, qtype: str | None = None) -> int:
        """Queries seen for ``qname`` (and ``qtype``; all types when ``None``)."""
        name = normalize_name(qname)
        if qtype is not None:
            return self.queries[(name, qtype.upper())]
        return sum(n for (q, _), n in self.queries.items() if q == name)

    @property
    def total(self) -> int:
        """All queries seen."""
        return sum(self.queries.values())

    def reset(self) -> None:
        """Forget every counter."""
        self.queries.clear()

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view: ``{"total": n, "queries": {"ok.test/MX": 2, ...}}``."""
        return {
            "total": self.total,
            "queries": {f"{q}/{t}": n for (q, t), n in sorted(self.queries.items())},
        }


def build_rdata(record: Record) -> dns.rdata.Rdata:
    """The dnspython rdata of ``record`` (TXT text split into 255-byte strings)."""
    if record.rtype == "TXT":
        raw = record.value.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    rdtype = dns.rdatatype.from_text(record.rtype)
    return dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, record.value, origin=dns.name.root, relativize=False
    )


class _ZoneData:
    """Indexed records: rrsets by (name, type), the set of existing names, zone apexes."""

    def __init__(self, spec: WorldSpec, ns_address: str, negative_ttl: int) -> None:
        self.apexes = sorted(
            (dns.name.from_text(z) for z in spec.zones), key=lambda n: -len(n.labels)
        )
        self.rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self.names: set[dns.name.Name] = set()
        records = list(spec.all_records())
        for apex in self.apexes:
            zone = apex.to_text(omit_final_dot=True)
            ns_name = f"ns.{zone}" if zone else "ns"
            records.append(
                Record(
                    zone or ".",
                    "SOA",
                    f"{ns_name}. hostmaster.{zone + '.' if zone else ''} 1 3600 600 86400 "
                    f"{negative_ttl}",
                    _SOA_TTL,
                )
            )
            records.append(Record(zone or ".", "NS", f"{ns_name}.", _SOA_TTL))
            if not any(r.fqdn == ns_name for r in records):
                records.append(Record(ns_name, "A", ns_address, _SOA_TTL))
        for rec in records:
            name = dns.name.from_text(rec.fqdn or ".")
            rdata = build_rdata(rec)
            key = (name, rdata.rdtype)
            rrset = self.rrsets.get(key)
            if rrset is None:
                rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdata.rdtype)
                self.rrsets[key] = rrset
            rrset.add(rdata, rec.ttl)  # add() keeps the smallest TTL
            owner_zone = self.zone_of(name)
            if owner_zone is None:
                continue  # outside every served zone: never answered
            while name != owner_zone:
                self.names.add(name)
                name = name.parent()
            self.names.add(owner_zone)

    def zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The most specific served apex containing ``name``, if any."""
        for apex in self.apexes:
            if name.is_subdomain(apex):
                return apex
        return None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            wire = await self.server.handle_wire(data, udp=True)
        except Exception:
            log.exception("DNS answer failed")
            return
        if wire is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)


class DnsServer:
    """Authoritative DNS over UDP and TCP on one loopback ``host`` and ``port``.

    ``port=0`` picks a free port: UDP is bound first, then TCP on the same number
    (retrying with a new port if TCP's is taken).
    """

    def __init__(
        self,
        spec: WorldSpec,
        host: str = "127.0.2.1",
        port: int = 0,
        *,
        latency: float | None = None,
        negative_ttl: int = 60,
    ) -> None:
        self.spec = spec
        self.host = host
        self.port = port
        self.latency = spec.dns_latency if latency is None else latency
        self.negative_ttl = negative_ttl
        self.stats = DnsStats()
        self._zones = _ZoneData(spec, host, negative_ttl)
        self._servfail = {normalize_name(n) for n in spec.servfail}
        self._silent = {normalize_name(n) for n in spec.silent}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound."""
        return self.host, self.port

    @property
    def nameserver(self) -> str:
        """``"host:port"``, the format of ``MAILSIFT_DNS_NAMESERVERS``."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind UDP then TCP on the same port and start answering."""
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for _ in range(_MAX_BIND_ATTEMPTS if self.port == 0 else 1):
            transport, _proto = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            port = int(transport.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._handle_tcp, self.host, port)
            except OSError as exc:
                transport.close()
                last_error = exc
                continue
            self._udp = transport
            self.port = port
            log.debug("DNS listening on %s:%d (udp+tcp)", self.host, port)
            return
        raise OSError(f"could not bind DNS udp+tcp on {self.host}:{self.port}: {last_error}")

    async def stop(self) -> None:
        """Close the sockets and cancel in-flight answers."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        self._writers.add(writer)
        try:
            while True:
                try:
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                wire = await self.handle_wire(data, udp=False)
                if wire is None:
                    return
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            if current is not None:
                self._tasks.discard(current)
            writer.close()

    async def handle_wire(self, data: bytes, *, udp: bool) -> bytes | None:
        """Answer one query in wire format (``None`` = unparsable, send nothing)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            if len(data) >= 12:  # echo the id with FORMERR
                return data[:2] + b"\x81\x01" + b"\x00" * 8
            return None
        if query.question and normalize_name(query.question[0].name.to_text()) in self._silent:
            self.stats.record(query.question[0].name.to_text(),
                              dns.rdatatype.to_text(query.question[0].rdtype))
            return None  # a nameserver that never answers for this name
        try:
            response = self.resolve(query)
        except Exception:  # a bug here must not look like a timeout
            log.exception("DNS resolve failed for %s", query.question)
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        max_size = 65535
        if udp:
            max_size = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=max_size)

    def resolve(self, query: dns.message.Message) -> dns.message.Message:
        """Build the response to ``query`` (pure: no I/O, counts the query)."""
        response = dns.message.make_response(query)
        if query.opcode() != 0 or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if query.opcode() != 0 else dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname = question.name
        qtype = question.rdtype
        self.stats.record(qname.to_text(), dns.rdatatype.to_text(qtype))
        if normalize_name(qname.to_text()) in self._servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        apex = self._zones.zone_of(qname)
        if apex is None or question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        lname = dns.name.from_text(qname.to_text().lower())
        rrsets = self._zones.rrsets
        if qtype == dns.rdatatype.ANY:
            found = [rs for (n, _t), rs in rrsets.items() if n == lname]
            if found:
                response.answer.extend(self._renamed(rs, qname) for rs in found)
                return response
        elif (lname, qtype) in rrsets:
            response.answer.append(self._renamed(rrsets[(lname, qtype)], qname))
            return response
        elif (lname, dns.rdatatype.CNAME) in rrsets:
            cname = rrsets[(lname, dns.rdatatype.CNAME)]
            response.answer.append(self._renamed(cname, qname))
            target = next(iter(cname)).target
            if (target, qtype) in rrsets:
                response.answer.append(rrsets[(target, qtype)])
            return response
        if lname not in self._zones.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        soa = rrsets[(apex, dns.rdatatype.SOA)]
        negative = min(soa.ttl, self.negative_ttl)
        response.authority.append(dns.rrset.from_rdata_list(soa.name, negative, list(soa)))
        return response

    @staticmethod
    def _renamed(rrset: dns.rrset.RRset, qname: dns.name.Name) -> dns.rrset.RRset:
        """The rrset under the exact spelling the client used (0x20 case preserved)."""
        if rrset.name.to_text() == qname.to_text():
            return rrset
        return dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset))
