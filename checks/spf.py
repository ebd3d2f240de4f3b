"""SPF (RFC 7208): a pure parser of one record, and the evaluation of a domain's record tree.

We never send mail, so there is no sending IP to check: "evaluating" a domain's SPF here
means what a receiver would find wrong with it *whatever* the IP. :func:`lookup_spf` fetches
the record, follows every ``include:`` and ``redirect=`` (through our async resolver and its
cache: ``_spf.google.com`` is asked once for all the domains that include it) and reports

* ``lookups``: the DNS-querying terms of the whole tree (``include``, ``a``, ``mx``, ``ptr``,
  ``exists``, ``redirect``); more than 10 is a ``permerror`` (§4.6.4);
* ``void_lookups``: followed names that answered NXDOMAIN or nothing; more than 2 is a
  ``permerror`` (§4.6.4);
* ``all_qualifier``: the *effective* ``all``: the record's own, else the one of the record
  its ``redirect=`` points to (§6.1: ``redirect`` is ignored when the record has ``all``);
* ``errors``: everything wrong, e.g. an ``include`` of a name without SPF (a permerror,
  §5.2), a loop, a syntax error deeper in the tree.

``a``, ``mx``, ``ptr`` and ``exists`` are counted but not resolved (what they match depends
on the sender), and a target holding a macro (``%{d}``) is counted but not followed.

>>> parse_spf(["v=spf1 include:_spf.example.net -all"]).all_qualifier
'-'
>>> parse_spf(["v=spf1 a mx include:x.example ~all"]).lookups
3
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from checks.dns import DnsError, NoData, NxDomain, Resolver
from checks.model import SpfInfo

__all__ = ["MAX_LOOKUPS", "MAX_VOID_LOOKUPS", "parse_spf", "lookup_spf"]

#: RFC 7208 §4.6.4: at most 10 DNS-querying terms, at most 2 void lookups
MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2

_SPF_VERSION = re.compile(r"^v=spf1(?:\s|$)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)$")
_DUAL_CIDR = re.compile(r"^(?:/(\d{1,2}))?(?://(\d{1,3}))?$")
_QUERYING = frozenset({"include", "a", "mx", "ptr", "exists"})


class _SpfSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class _Record:
    """One parsed record: what the evaluation needs of it."""

    text: str
    all_qualifier: str | None
    includes: tuple[str, ...]
    redirect: str | None
    lookups: int  # DNS-querying terms of this record alone (redirect included when used)


def _check_domain_spec(mech: str, spec: str) -> None:
    if not spec or any(c.isspace() for c in spec) or ".." in spec:
        raise _SpfSyntaxError(f"{mech}: invalid domain {spec!r}")


def _check_dual_cidr(mech: str, text: str) -> None:
    m = _DUAL_CIDR.match(text)
    if m is None:
        raise _SpfSyntaxError(f"{mech}: invalid CIDR length {text!r}")
    if m.group(1) is not None and int(m.group(1)) > 32:
        raise _SpfSyntaxError(f"{mech}: IPv4 CIDR length {m.group(1)} > 32")
    if m.group(2) is not None and int(m.group(2)) > 128:
        raise _SpfSyntaxError(f"{mech}: IPv6 CIDR length {m.group(2)} > 128")


def _check_ip(mech: str, version: int, arg: str) -> None:
    address, slash, length = arg.partition("/")
    limit = 32 if version == 4 else 128
    try:
        if version == 4:
            ipaddress.IPv4Address(address)
        else:
            ipaddress.IPv6Address(address)
    except ValueError:
        raise _SpfSyntaxError(f"{mech}: invalid address {address!r}") from None
    if slash and (not length.isdigit() or int(length) > limit):
        raise _SpfSyntaxError(f"{mech}: invalid CIDR length {length!r} in {arg!r}")


def _check_mechanism(name: str, rest: str) -> None:
    """Validate one mechanism (lower-cased ``name``, ``rest`` after the name)."""
    if name == "all":
        if rest:
            raise _SpfSyntaxError(f"all takes no argument, got {rest!r}")
    elif name in ("include", "exists"):
        if not rest.startswith(":"):
            raise _SpfSyntaxError(f"{name} needs ':domain'")
        _check_domain_spec(name, rest[1:])
    elif name in ("a", "mx"):
        if rest.startswith(":"):
            domain, slash, cidr = rest[1:].partition("/")
            _check_domain_spec(name, domain)
            _check_dual_cidr(name, slash + cidr)
        else:
            _check_dual_cidr(name, rest)
    elif name == "ptr":
        if rest:
            if not rest.startswith(":"):
                raise _SpfSyntaxError(f"ptr: unexpected {rest!r}")
            _check_domain_spec(name, rest[1:])
    elif name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise _SpfSyntaxError(f"{name} needs ':address'")
        _check_ip(name, 4 if name == "ip4" else 6, rest[1:])
    else:
        raise _SpfSyntaxError(f"unknown mechanism {name!r}")


def _parse_record(record: str) -> _Record:
    """Check every term after ``v=spf1`` (raises :class:`_SpfSyntaxError`)."""
    all_qualifier: str | None = None
    seen_modifiers: set[str] = set()
    includes: list[str] = []
    redirect: str | None = None
    lookups = 0
    for term in record.split()[1:]:
        modifier = _MODIFIER.match(term)
        if modifier is not None:
            name = modifier.group(1).lower()
            if name in ("redirect", "exp"):
                if name in seen_modifiers:
                    raise _SpfSyntaxError(f"duplicate {name}= modifier")
                _check_domain_spec(name, modifier.group(2))
                if name == "redirect":
                    redirect = modifier.group(2)
            seen_modifiers.add(name)
            continue
        mechanism = _MECHANISM.match(term)
        if mechanism is None:
            raise _SpfSyntaxError(f"invalid term {term!r}")
        qualifier, name, rest = mechanism.groups()
        name = name.lower()
        _check_mechanism(name, rest)
        if name in _QUERYING:
            lookups += 1
        if name == "include":
            includes.append(rest[1:])
        if name == "all" and all_qualifier is None:
            all_qualifier = qualifier or "+"
    if all_qualifier is not None:
        redirect = None  # §6.1: ignored when the record has an `all`
    if redirect is not None:
        lookups += 1
    return _Record(record, all_qualifier, tuple(includes), redirect, lookups)


def _spf_records(txt_records: Sequence[str]) -> list[str]:
    return [r.strip() for r in txt_records if _SPF_VERSION.match(r.strip())]


def parse_spf(txt_records: Sequence[str]) -> SpfInfo:
    """The SPF policy among a name's TXT records, on its own (no includes followed).

    Status is ``absent`` (no ``v=spf1`` record), ``multiple`` (more than one: a permerror),
    ``invalid`` (a term does not parse; ``error`` says which) or ``present``.
    ``all_qualifier`` is the first ``all`` mechanism's qualifier (``+`` when implicit);
    ``lookups`` counts this record's DNS-querying terms.

    >>> parse_spf(["google-site-verification=abc"]).status
    'absent'
    >>> parse_spf(["V=SPF1 mx ~all"]).all_qualifier
    '~'
    >>> parse_spf(["v=spf1 all"]).all_qualifier, parse_spf(["v=spf1 a mx"]).all_qualifier
    ('+', None)
    >>> parse_spf(["v=spf1 -all", "v=spf1 ~all"]).status
    'multiple'
    >>> info = parse_spf(["v=spf1 ip4:192.0.2.0/33 -all"])
    >>> info.status, info.error
    ('invalid', "ip4: invalid CIDR length '33' in '192.0.2.0/33'")
    >>> parse_spf(["v=spf10 -all"]).status
    'absent'
    """
    records = _spf_records(txt_records)
    if not records:
        return SpfInfo(status="absent")
    if len(records) > 1:
        error = f"{len(records)} SPF records (RFC 7208 allows one)"
        return SpfInfo(status="multiple", record=records[0], error=error, errors=(error,))
    record = records[0]
    try:
        parsed = _parse_record(record)
    except _SpfSyntaxError as exc:
        return SpfInfo(status="invalid", record=record, error=str(exc), errors=(str(exc),))
    return SpfInfo(status="present", record=record, all_qualifier=parsed.all_qualifier,
                   lookups=parsed.lookups)


def _bare(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


class _Walk:
    """One evaluation of a record tree: counts and errors, shared by all its branches."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.lookups = 0
        self.void = 0
        self.followed: list[str] = []
        self.errors: list[str] = []
        self.temporary = False

    async def follow(self, record: _Record, path: tuple[str, ...]) -> str | None:
        """Count ``record``'s terms, follow its includes and redirect (concurrently);
        returns its effective ``all`` qualifier.

        The count is taken before anything is fetched, and nothing more is fetched once
        it passes the limit, so a hostile tree costs at most :data:`MAX_LOOKUPS` queries."""
        self.lookups += record.lookups
        if self.lookups > MAX_LOOKUPS:
            return record.all_qualifier
        targets = [("include", t) for t in record.includes]
        if record.redirect is not None:
            targets.append(("redirect", record.redirect))
        results = await asyncio.gather(*(self.branch(kind, t, path) for kind, t in targets))
        if record.redirect is not None:
            return results[-1]
        return record.all_qualifier

    async def branch(self, kind: str, target: str, path: tuple[str, ...]) -> str | None:
        name = _bare(target)
        if "%" in name:
            return None  # a macro: its expansion depends on the sender
        if name in path:
            self.errors.append(f"{kind}:{name} loops back to itself")
            return None
        try:
            answer = await self.resolver.query(name, "TXT")
        except (NxDomain, NoData):
            self.void += 1
            self.errors.append(f"{kind}:{name} has no SPF record")
            return None
        except DnsError as exc:
            self.temporary = True
            self.errors.append(f"{kind}:{name}: {exc or type(exc).__name__}")
            return None
        records = _spf_records(answer.records)
        if len(records) != 1:
            self.errors.append(f"{kind}:{name} has {len(records) or 'no'} SPF record"
                               f"{'s' if len(records) > 1 else ''}")
            return None
        self.followed.append(name)
        try:
            parsed = _parse_record(records[0])
        except _SpfSyntaxError as exc:
            self.errors.append(f"{kind}:{name}: {exc}")
            return None
        return await self.follow(parsed, (*path, name))


async def lookup_spf(resolver: Resolver, domain: str) -> SpfInfo:
    """The domain's SPF record, evaluated (see the module docstring).

    NXDOMAIN/NODATA → ``absent``; a DNS failure at the top, or anywhere in the tree →
    ``unknown`` (a temperror: asked again later); a tree past the lookup limits, or with
    an include/redirect that does not resolve to one valid record → ``permerror``.
    """
    base = _bare(domain)
    try:
        answer = await resolver.query(base, "TXT")
    except (NxDomain, NoData):
        return SpfInfo(status="absent")
    except DnsError as exc:
        error = str(exc) or type(exc).__name__
        return SpfInfo(status="unknown", error=error, errors=(error,))
    top = parse_spf(answer.records)
    if top.status != "present" or top.record is None:
        return top
    walk = _Walk(resolver)
    effective = await walk.follow(_parse_record(top.record), (base,))
    errors = list(walk.errors)
    over = walk.lookups > MAX_LOOKUPS or walk.void > MAX_VOID_LOOKUPS
    if walk.lookups > MAX_LOOKUPS:
        errors.insert(0, f"{walk.lookups} DNS-querying terms (RFC 7208 allows {MAX_LOOKUPS})")
    if walk.void > MAX_VOID_LOOKUPS:
        errors.insert(0, f"{walk.void} void lookups (RFC 7208 allows {MAX_VOID_LOOKUPS})")
    status = "present"
    if over:
        status = "permerror"
    elif walk.temporary:
        status = "unknown"
    elif errors:
        status = "permerror"
    return replace(top, status=status, all_qualifier=effective, lookups=walk.lookups,
                   void_lookups=walk.void, followed=tuple(walk.followed),
                   error=errors[0] if errors else None, errors=tuple(errors))
