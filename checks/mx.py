"""Where mail for a domain goes: MX lookup with RFC 5321 §5.1 and RFC 7505 semantics.

:func:`resolve_mx` asks a :class:`~checks.dns.Resolver` for the domain's MX records, then
resolves every exchanger's A and AAAA records itself (never ``getaddrinfo``).

>>> parse_mx_record("10 MX1.Example.COM.")
(10, 'mx1.example.com')
>>> parse_mx_record("0 .")
(0, '')
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from checks.dns import DnsAnswer, DnsError, NoData, NxDomain, Resolver
from checks.model import MxHost, MxResult, MxStatus

__all__ = ["resolve_mx", "parse_mx_record", "host_addresses", "MAX_MX_HOSTS"]

#: at most this many distinct exchangers are resolved (the lowest preferences win)
MAX_MX_HOSTS = 10


def parse_mx_record(text: str) -> tuple[int, str] | None:
    """``"10 mx.example.com."`` → ``(10, "mx.example.com")``; the root target is ``""``.

    Returns None for text that is not an MX record.

    >>> parse_mx_record("bogus") is None, parse_mx_record("70000 mx.example.") is None
    (True, True)
    """
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    preference = int(parts[0])
    if preference > 65535:
        return None
    return preference, parts[1].rstrip(".").lower()


def _is_ip_literal(host: str) -> bool:
    """MX targets must be names; ``192.0.2.1`` or ``[192.0.2.1]`` are not valid.

    >>> _is_ip_literal("192.0.2.1"), _is_ip_literal("[2001:db8::1]"), _is_ip_literal("mx.a")
    (True, True, False)
    """
    candidate = host.strip("[]")
    if candidate.lower().startswith("ipv6:"):
        candidate = candidate[5:]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


async def host_addresses(resolver: Resolver, host: str) -> tuple[tuple[str, ...], str | None]:
    """The A then AAAA addresses of ``host`` (looked up concurrently, deduplicated).

    Returns ``(addresses, failure)`` where ``failure`` is the text of a :class:`DnsFailure`
    (or other non-negative DNS error) met on either lookup, else None. NXDOMAIN and NODATA
    simply contribute no address.
    """
    results = await asyncio.gather(
        resolver.query(host, "A"), resolver.query(host, "AAAA"), return_exceptions=True
    )
    addresses: list[str] = []
    failure: str | None = None
    for result in results:
        if isinstance(result, DnsAnswer):
            addresses.extend(result.records)
        elif isinstance(result, (NxDomain, NoData)):
            continue
        elif isinstance(result, DnsError):
            failure = failure or str(result)
        elif isinstance(result, BaseException):
            raise result
    return tuple(dict.fromkeys(addresses)), failure


async def resolve_mx(
    resolver: Resolver, ascii_domain: str, *, max_hosts: int = MAX_MX_HOSTS
) -> MxResult:
    """Find the mail exchangers of ``ascii_domain`` (IDNA form) and their addresses.

    * MX records are sorted by preference (ties keep the server's order); host names are
      lower-cased without the trailing dot; duplicates keep their best preference;
    * a null MX (RFC 7505: only a target of ``.``) → :attr:`MxStatus.NULL_MX`; a ``.``
      target next to real exchangers is ignored;
    * NXDOMAIN → ``NO_DOMAIN``; no MX record → the domain's own A/AAAA as an implicit MX
      (preference 0, ``implicit=True``), or ``NO_MX_HOST`` when it has none;
    * exchangers without any address (including IP literals, which are not valid MX
      targets) are dropped; none left → ``NO_MX_HOST``;
    * a DNS failure on the MX query → ``DNS_ERROR``; so is "no address" when an address
      lookup failed, since a temporary failure must not look like a permanent one.
    """
    domain = ascii_domain.strip().rstrip(".").lower()
    if not domain:
        return MxResult(MxStatus.NO_DOMAIN, error="empty domain")
    try:
        answer = await resolver.query(domain, "MX")
    except NxDomain:
        return MxResult(MxStatus.NO_DOMAIN)
    except NoData:
        return await _implicit_mx(resolver, domain)
    except DnsError as exc:
        return MxResult(MxStatus.DNS_ERROR, error=str(exc) or type(exc).__name__)

    parsed = [p for p in (parse_mx_record(r) for r in answer.records) if p is not None]
    if not parsed:
        return MxResult(MxStatus.DNS_ERROR, error=f"{domain}: unparseable MX records")
    real = [(pref, host) for pref, host in parsed if host]
    if not real:
        return MxResult(MxStatus.NULL_MX)
    real.sort(key=lambda item: item[0])  # stable: ties keep order
    best: dict[str, int] = {}
    for pref, host in real:
        best.setdefault(host, pref)
    candidates = list(best.items())[: max(1, max_hosts)]
    return await _resolve_hosts(resolver, candidates)


async def _resolve_hosts(
    resolver: Resolver, candidates: Sequence[tuple[str, int]]
) -> MxResult:
    lookups = [
        host_addresses(resolver, host) if not _is_ip_literal(host) else _no_addresses()
        for host, _ in candidates
    ]
    results = await asyncio.gather(*lookups)
    hosts: list[MxHost] = []
    failures: list[str] = []
    for (host, pref), (addresses, failure) in zip(candidates, results, strict=True):
        if addresses:
            hosts.append(MxHost(preference=pref, host=host, addresses=addresses))
        elif failure:
            failures.append(failure)
    if hosts:
        return MxResult(MxStatus.OK, hosts=tuple(hosts))
    if failures:
        return MxResult(MxStatus.DNS_ERROR, error="; ".join(failures))
    return MxResult(MxStatus.NO_MX_HOST)


async def _no_addresses() -> tuple[tuple[str, ...], str | None]:
    return (), None


async def _implicit_mx(resolver: Resolver, domain: str) -> MxResult:
    addresses, failure = await host_addresses(resolver, domain)
    if addresses:
        return MxResult(MxStatus.OK, hosts=(MxHost(0, domain, addresses),), implicit=True)
    if failure:
        return MxResult(MxStatus.DNS_ERROR, error=failure)
    return MxResult(MxStatus.NO_MX_HOST)

