"""DNS lookups for the verification engine: a small async resolver API, a cache, errors.

Everything above this module talks to a :class:`Resolver`: ``await resolver.query(name,
rdtype)`` returns a :class:`DnsAnswer` (records in presentation text, plus a TTL) or raises
one of :class:`NxDomain`, :class:`NoData` or :class:`DnsFailure`. Two implementations:

* :class:`DnspythonResolver` asks real nameservers (the configured ``(ip, port)`` list, or
  the system's) through :mod:`dns.asyncresolver`; names are always absolute.
* :class:`CachingResolver` wraps another resolver with a :class:`DnsCache` (in-process
  :class:`MemoryDnsCache` here; a shared one can implement the same protocol).

>>> DnsAnswer(("10 mx.example.com.",), 300).records
('10 mx.example.com.',)
>>> str(DnsFailure("timeout: no answer for example.com MX within 3.0s"))
'timeout: no answer for example.com MX within 3.0s'
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from checks.ttlmap import TtlMap

__all__ = [
    "TtlScope",
    "RecordingResolver",
    "DnsAnswer",
    "DnsError",
    "NxDomain",
    "NoData",
    "DnsFailure",
    "Resolver",
    "DnspythonResolver",
    "DnsCache",
    "MemoryDnsCache",
    "CachingResolver",
    "cache_key",
]


@dataclass(frozen=True)
class DnsAnswer:
    """A positive answer: the records of one RRset in presentation text, and its TTL.

    MX records look like ``"10 mx.example.com."``, TXT records are the concatenation of
    their character-strings (UTF-8, undecodable bytes replaced), A/AAAA records are the
    address.
    """

    records: tuple[str, ...]
    ttl: int


class DnsError(Exception):
    """Base of every error a :class:`Resolver` raises."""


class NxDomain(DnsError):
    """The name does not exist (NXDOMAIN). ``ttl`` is the negative-caching TTL, if known.

    >>> NxDomain("nope.example: no such domain", ttl=60).ttl
    60
    """

    def __init__(self, message: str, *, ttl: int | None = None) -> None:
        super().__init__(message)
        self.ttl = ttl


class NoData(DnsError):
    """The name exists but has no record of the asked type (NOERROR, empty answer).

    ``ttl`` is the negative-caching TTL from the SOA (min of its TTL and MINIMUM), if the
    server sent one.
    """

    def __init__(self, message: str, *, ttl: int | None = None) -> None:
        super().__init__(message)
        self.ttl = ttl


_Negative = TypeVar("_Negative", bound=NxDomain | NoData)


def _fresh(error: _Negative) -> _Negative:
    """The same negative answer as a new error, with no traceback: one that is kept (in a
    cache, in a future) or raised again must not hold the frames it went through, which
    would close a reference cycle through whatever those frames hold.

    >>> _fresh(NxDomain("nope.example", ttl=60)).ttl
    60
    """
    return type(error)(str(error), ttl=error.ttl)


class DnsFailure(DnsError):
    """No usable answer: timeout, SERVFAIL, REFUSED, no nameserver answered, a bad name…

    The message says which. Failures are temporary by nature and never cached.
    """


class Resolver(Protocol):
    """Anything that answers DNS questions the way :class:`DnspythonResolver` does."""

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Look up ``rdtype`` records (``"MX"``, ``"TXT"``, ``"A"``…) of absolute ``name``.

        Raises :class:`NxDomain`, :class:`NoData` or :class:`DnsFailure`.
        """
        ...


# --------------------------------------------------------------------------- dnspython


def _rdata_text(rdata: Any) -> str:
    """Presentation text of one rdata, TXT joined and decoded, A/AAAA as the address."""
    strings = getattr(rdata, "strings", None)
    if strings is not None:  # TXT, SPF
        return b"".join(strings).decode("utf-8", errors="replace")
    address = getattr(rdata, "address", None)
    if isinstance(address, str):  # A, AAAA
        return address
    return str(rdata.to_text())


def _negative_ttl(response: dns.message.Message | None) -> int | None:
    """The negative-caching TTL of a response: min(SOA TTL, SOA MINIMUM), or None."""
    if response is None:
        return None
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset) > 0:
            minimum = int(getattr(rrset[0], "minimum", rrset.ttl))
            return int(min(rrset.ttl, minimum))
    return None


def _server_text(server: object, port: object) -> str:
    """``127.0.0.1:53`` / ``[::1]:53`` from dnspython's ``Do53:127.0.0.1@53`` and a port."""
    text = str(server)
    if text.startswith("Do53:"):
        text = text[len("Do53:"):].rsplit("@", 1)[0]
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _errors_text(errors: Sequence[Any]) -> str:
    """``"SERVFAIL from 127.0.0.1:53; timed out from …"`` from dnspython's error tuples."""
    parts: list[str] = []
    for err in errors:
        try:
            server, tcp, port, problem = err[0], err[1], err[2], err[3]
        except (TypeError, IndexError):
            parts.append(str(err))
            continue
        if isinstance(problem, dns.exception.Timeout):
            what = "timed out"
        elif isinstance(problem, ConnectionRefusedError):
            what = "connection refused"
        elif isinstance(problem, str):
            what = problem  # an rcode text: SERVFAIL, REFUSED, NOTIMP…
        else:
            what = f"{type(problem).__name__}: {problem}"
        parts.append(f"{what} from {_server_text(server, port)}{' (tcp)' if tcp else ''}")
    # keep the message short: collapse repeats, keep order
    return "; ".join(dict.fromkeys(parts))


class DnspythonResolver:
    """A :class:`Resolver` backed by :class:`dns.asyncresolver.Resolver`.

    ``nameservers`` is a sequence of ``(ip, port)``; empty or None uses the system
    configuration (``/etc/resolv.conf``). ``timeout`` is the total time for one lookup
    (dnspython's *lifetime*); each attempt gets ``attempt_timeout`` (default: the lifetime
    split so every nameserver is tried, and a single server is tried twice); at most
    ``max_in_flight`` queries are in flight at once, the others wait their turn (a list of
    new domains must not flood the resolver). Names are
    always absolute (no search list); EDNS0 is on (1232-byte payload); a truncated UDP
    answer is retried over TCP.

    >>> r = DnspythonResolver([("127.0.0.1", 5353)], timeout=2.0)
    >>> r.nameservers
    (('127.0.0.1', 5353),)
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None = None,
        *,
        timeout: float = 3.0,
        attempt_timeout: float | None = None,
        max_in_flight: int = 100,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        #: queries in flight at once; more wait their turn before their lifetime starts
        self.max_in_flight = max_in_flight
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(str(ip), int(port)) for ip, port in nameservers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.exception.DNSException as exc:
                raise DnsFailure(f"no system resolver configuration: {exc}") from exc
        resolver.search = []
        resolver.domain = dns.name.root
        resolver.use_search_by_default = False
        resolver.use_edns(0, 0, 1232)
        resolver.cache = None
        resolver.rotate = False
        resolver.retry_servfail = False
        count = max(1, len(resolver.nameservers))
        if attempt_timeout is None:
            attempt_timeout = timeout / max(2, count)
        resolver.timeout = min(attempt_timeout, timeout)
        resolver.lifetime = timeout
        self._resolver = resolver
        self.timeout = timeout

    def _limiter(self) -> asyncio.Semaphore:
        """The in-flight limit of the running loop (a resolver may outlive one)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(self.max_in_flight), loop
        return self._slots

    @property
    def nameservers(self) -> tuple[tuple[str, int], ...]:
        """The ``(ip, port)`` pairs queried, in order."""
        out: list[tuple[str, int]] = []
        for ns in self._resolver.nameservers:
            if isinstance(ns, dns.nameserver.Nameserver):
                out.append((ns.answer_nameserver(), ns.answer_port()))
            else:
                out.append((str(ns), int(self._resolver.port)))
        return tuple(out)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask the nameservers for ``rdtype`` records of ``name`` (taken as absolute)."""
        rdt = dns.rdatatype.from_text(rdtype)
        label = f"{name.rstrip('.') or '.'} {rdtype.upper()}"
        try:
            qname = dns.name.from_text(name, origin=dns.name.root)
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"invalid name {name!r}: {exc}") from exc
        # The error is raised after its ``except`` block, never inside it: raised there, it
        # would carry dnspython's exception as its context (the query messages, names and
        # frames of the resolution), and every negative answer would leave that graph as
        # cyclic garbage for the collector, whose pauses make RCPT permits late.
        failure: DnsError
        try:
            async with self._limiter():
                answer = await self._resolver.resolve(
                    qname, rdt, search=False, raise_on_no_answer=False, lifetime=self.timeout
                )
        except dns.resolver.NXDOMAIN as exc:
            ttl: int | None = None
            for response in dict(exc.kwargs.get("responses") or {}).values():
                ttl = _negative_ttl(response)
                if ttl is not None:
                    break
            failure = NxDomain(f"{label}: no such domain (NXDOMAIN)", ttl=ttl)
        except dns.exception.Timeout as exc:
            details = _errors_text(exc.kwargs.get("errors", ()))
            failure = DnsFailure(
                f"timeout: no answer for {label} within {self.timeout:g}s"
                + (f" ({details})" if details else "")
            )
        except dns.resolver.NoNameservers as exc:
            details = _errors_text(exc.kwargs.get("errors", ()))
            failure = DnsFailure(
                f"no nameserver answered {label}" + (f": {details}" if details else "")
            )
        except dns.resolver.YXDOMAIN:
            failure = DnsFailure(f"{label}: name too long after DNAME substitution")
        except dns.exception.DNSException as exc:
            failure = DnsFailure(f"{label}: {type(exc).__name__}: {exc}")
        else:
            if answer.rrset is not None and len(answer.rrset) > 0:
                records = tuple(_rdata_text(rd) for rd in answer.rrset)
                return DnsAnswer(records, int(answer.chaining_result.minimum_ttl))
            failure = NoData(f"{label}: no {rdtype.upper()} record (NODATA)",
                             ttl=_negative_ttl(answer.response))
        try:
            raise failure
        finally:
            del failure  # the raised error's traceback holds this frame: no cycle back


# --------------------------------------------------------------------------- caching


class DnsCache(Protocol):
    """Byte storage with per-key expiry (in-process here; Redis elsewhere)."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key`` and not yet expired, else None."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""
        ...


class MemoryDnsCache:
    """An in-process :class:`DnsCache`: TTL per entry, at most ``max_entries`` entries.

    When full, expired entries are dropped first, then the oldest-inserted ones (FIFO).
    ``clock`` returns seconds (monotonic by default; tests pass a fake one).

    >>> import asyncio
    >>> now = [0.0]
    >>> cache = MemoryDnsCache(max_entries=2, clock=lambda: now[0])
    >>> asyncio.run(cache.set("a", b"1", ttl=10))
    >>> asyncio.run(cache.get("a"))
    b'1'
    >>> now[0] = 10.0
    >>> asyncio.run(cache.get("a")) is None
    True
    """

    def __init__(
        self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._data: TtlMap[bytes] = TtlMap(max_entries, clock=clock)

    @property
    def size(self) -> int:
        """Entries held (expired ones included until they are looked up or evicted)."""
        return len(self._data)

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        return None if item is None else item[0]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            self._data.discard(key)
            return
        self._data.put(key, value, ttl)


def cache_key(name: str, rdtype: str, prefix: str = "dns:") -> str:
    """The cache key of a question: case- and trailing-dot-insensitive.

    >>> cache_key("Example.COM.", "mx")
    'dns:example.com/MX'
    """
    return f"{prefix}{name.rstrip('.').lower()}/{rdtype.upper()}"


def _clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


class CachingResolver(Resolver):
    """A :class:`Resolver` that remembers answers of another one in a :class:`DnsCache`.

    * positive answers are kept for ``answer.ttl`` clamped to ``[min_ttl, max_ttl]``;
    * NXDOMAIN/NODATA are kept for the server's negative TTL (SOA) when known, else
      ``negative_ttl`` — either way clamped to ``[min(min_ttl, negative_ttl),
      negative_ttl]``, so negative entries are short-lived;
    * :class:`DnsFailure` is never cached.

    Entries are JSON bytes; a cached answer comes back with its remaining TTL (computed from
    the wall clock, so a shared cache works across processes). ``hits``/``misses`` count
    lookups served from / not found in the cache (an unreadable entry counts as a miss).

    In front of the shared cache sits a small in-process one (decoded answers, for the
    same remaining TTL, at most ``local_entries``), so a hot name costs no round trip to a
    shared cache; and concurrent misses of one question wait for a single lookup (single
    flight) instead of each asking the nameservers.
    """

    def __init__(
        self,
        resolver: Resolver,
        cache: DnsCache,
        *,
        min_ttl: float = 60.0,
        max_ttl: float = 86_400.0,
        negative_ttl: float = 300.0,
        key_prefix: str = "dns:",
        clock: Callable[[], float] = time.time,
        local_entries: int = 50_000,
    ) -> None:
        if not 0 <= min_ttl <= max_ttl:
            raise ValueError("need 0 <= min_ttl <= max_ttl")
        if negative_ttl < 0:
            raise ValueError("negative_ttl must not be negative")
        self.resolver = resolver
        self.cache = cache
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.key_prefix = key_prefix
        self._clock = clock
        self.hits = 0
        self.misses = 0
        #: decoded answers (and negative answers) in front of the shared cache
        self._local: TtlMap[DnsAnswer | DnsError] = TtlMap(local_entries, clock=clock)
        self._inflight: dict[str, asyncio.Future[DnsAnswer]] = {}

    def positive_ttl(self, ttl: float) -> float:
        """How long a positive answer with this TTL is cached.

        >>> r = CachingResolver(DnspythonResolver([("127.0.0.1", 53)]), MemoryDnsCache(),
        ...                     min_ttl=60, max_ttl=3600)
        >>> r.positive_ttl(5), r.positive_ttl(600), r.positive_ttl(86400)
        (60, 600, 3600)
        """
        return _clamp(ttl, self.min_ttl, self.max_ttl)

    def negative_cache_ttl(self, ttl: float | None) -> float:
        """How long an NXDOMAIN/NODATA with this (SOA-derived, maybe unknown) TTL is cached.

        >>> r = CachingResolver(DnspythonResolver([("127.0.0.1", 53)]), MemoryDnsCache(),
        ...                     min_ttl=60, negative_ttl=300)
        >>> r.negative_cache_ttl(None), r.negative_cache_ttl(5), r.negative_cache_ttl(86400)
        (300, 60, 300)
        """
        base = self.negative_ttl if ttl is None else ttl
        return _clamp(base, min(self.min_ttl, self.negative_ttl), self.negative_ttl)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        key = cache_key(name, rdtype, self.key_prefix)
        local = self._local.get(key)
        if local is not None:
            value, remaining = local
            self.hits += 1
            if isinstance(value, NxDomain):
                raise NxDomain(str(value), ttl=int(remaining))
            if isinstance(value, NoData):
                raise NoData(str(value), ttl=int(remaining))
            if isinstance(value, DnsError):
                raise value
            return DnsAnswer(value.records, int(remaining))
        running = self._inflight.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running)
            except (NxDomain, NoData) as exc:
                negative = exc
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise  # we were cancelled ourselves
                # the task that was looking it up was cancelled: not our business, ask
                return await self.query(name, rdtype)
            # the shared error, raised here, got a traceback holding this frame, which
            # holds the future that holds the error: a cycle. Drop it, raise a copy.
            negative.__traceback__ = None
            raise _fresh(negative)
        future: asyncio.Future[DnsAnswer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await self._lookup(key, name, rdtype)
        except BaseException as exc:
            if isinstance(exc, Exception):
                # the waiters get a copy of a negative answer: the future holding this
                # one would close a cycle (its traceback holds this frame, which holds
                # the future), garbage for the collector with every NXDOMAIN
                future.set_exception(_fresh(exc) if isinstance(exc, (NxDomain, NoData))
                                     else exc)
                future.exception()  # retrieved: nobody else may be waiting
            else:
                future.cancel()
            raise
        else:
            future.set_result(answer)
            return answer
        finally:
            del self._inflight[key]

    async def _lookup(self, key: str, name: str, rdtype: str) -> DnsAnswer:
        raw = await self.cache.get(key)
        if raw is not None:
            cached = self._decode(raw)
            if cached is not None:
                self.hits += 1
                remaining = float(getattr(cached, "ttl", 0) or 0)
                if isinstance(cached, (NxDomain, NoData)):
                    # copies: the one raised gets a traceback holding this frame
                    self._local.put(key, _fresh(cached), remaining)
                    raise _fresh(cached)
                self._local.put(key, cached, remaining)
                if isinstance(cached, DnsError):
                    raise cached
                return cached
        self.misses += 1
        try:
            answer = await self.resolver.query(name, rdtype)
        except (NxDomain, NoData) as exc:
            kind = "nxdomain" if isinstance(exc, NxDomain) else "nodata"
            ttl = self.negative_cache_ttl(exc.ttl)
            if ttl > 0:
                await self._store(key, {"kind": kind, "message": str(exc)}, ttl)
                self._local.put(key, _fresh(exc), ttl)
            raise
        ttl = self.positive_ttl(answer.ttl)
        if ttl > 0:
            await self._store(key, {"kind": "answer", "records": list(answer.records)}, ttl)
            self._local.put(key, answer, ttl)
        return answer

    async def _store(self, key: str, entry: dict[str, Any], ttl: float) -> None:
        entry["ttl"] = ttl
        entry["at"] = self._clock()
        await self.cache.set(key, json.dumps(entry, separators=(",", ":")).encode(), ttl)

    def _decode(self, raw: bytes) -> DnsAnswer | DnsError | None:
        try:
            entry = json.loads(raw)
            remaining = max(0, int(float(entry["ttl"]) - (self._clock() - float(entry["at"]))))
            kind = entry["kind"]
            if kind == "answer":
                records = entry["records"]
                if not isinstance(records, list) or not all(isinstance(r, str) for r in records):
                    return None
                return DnsAnswer(tuple(records), remaining)
            if kind == "nxdomain":
                return NxDomain(str(entry["message"]), ttl=remaining)
            if kind == "nodata":
                return NoData(str(entry["message"]), ttl=remaining)
        except (ValueError, KeyError, TypeError):
            return None
        return None


@dataclass
class TtlScope:
    """What the answers given inside one :meth:`RecordingResolver.scope` allow to keep."""

    #: the smallest TTL of them (seconds); ``inf`` when there were none
    min_ttl: float = math.inf
    #: some lookup failed (SERVFAIL, timeout): what was derived from it is not to be kept
    failed: bool = False

    def note(self, ttl: float) -> None:
        self.min_ttl = min(self.min_ttl, ttl)


_SCOPE: contextvars.ContextVar[TtlScope | None] = contextvars.ContextVar(
    "mailsift_dns_ttl_scope", default=None)


class RecordingResolver(Resolver):
    """Passes every query to ``inner``; inside :meth:`scope` (and the tasks started in
    it) it notes how long the answers may be kept, so a result derived from several
    lookups can be kept no longer than its shortest-lived part. ``negative_ttl`` turns an
    NXDOMAIN/NODATA TTL (None when unknown) into the time such an answer is kept.

    >>> async def demo() -> TtlScope:
    ...     class Two:
    ...         async def query(self, name: str, rdtype: str) -> DnsAnswer:
    ...             return DnsAnswer(("192.0.2.1",), 120 if rdtype == "A" else 30)
    ...     r = RecordingResolver(Two(), negative_ttl=lambda ttl: ttl or 60)
    ...     with r.scope() as scope:
    ...         await asyncio.gather(r.query("a.example.", "A"), r.query("a.example.", "MX"))
    ...     return scope
    >>> asyncio.run(demo())
    TtlScope(min_ttl=30, failed=False)
    """

    def __init__(self, inner: Resolver, *, negative_ttl: Callable[[float | None], float]
                 ) -> None:
        self.inner = inner
        self.negative_ttl = negative_ttl

    @contextmanager
    def scope(self) -> Iterator[TtlScope]:
        scope = TtlScope()
        token = _SCOPE.set(scope)
        try:
            yield scope
        finally:
            _SCOPE.reset(token)

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        scope = _SCOPE.get()
        if scope is None:
            return await self.inner.query(name, rdtype)
        try:
            answer = await self.inner.query(name, rdtype)
        except (NxDomain, NoData) as exc:
            scope.note(self.negative_ttl(exc.ttl))
            raise
        except BaseException:
            scope.failed = True
            raise
        scope.note(answer.ttl)
        return answer
