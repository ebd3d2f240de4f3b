"""SPF, DMARC and DKIM evidence: pure parsers of TXT records, and the lookups around them.

>>> parse_spf(["v=spf1 include:_spf.example.net -all"]).all_qualifier
'-'
>>> parse_dmarc(["v=DMARC1; p=reject; rua=mailto:d@example.com"]).policy
'reject'
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence

from checks.dns import DnsError, NoData, NxDomain, Resolver
from checks.model import DkimInfo, DmarcInfo, SpfInfo

__all__ = [
    "DEFAULT_DKIM_SELECTORS",
    "parse_spf",
    "parse_dmarc",
    "is_dkim_record",
    "lookup_spf",
    "lookup_dmarc",
    "lookup_dkim",
]

#: selectors tried by :func:`lookup_dkim`: the defaults of the largest providers (Google,
#: Microsoft 365, cPanel/Plesk, Mailchimp/Mandrill, Fastmail, Zoho, SES-style s1/s2…).
#: Ten, so a domain seen for the first time costs at most 16 queries in all.
DEFAULT_DKIM_SELECTORS: tuple[str, ...] = (
    "google", "selector1", "selector2", "default", "k1", "s1", "s2", "dkim", "mail",
    "fm1",
)

# --------------------------------------------------------------------------- SPF

_SPF_VERSION = re.compile(r"^v=spf1(?:\s|$)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)$")
_DUAL_CIDR = re.compile(r"^(?:/(\d{1,2}))?(?://(\d{1,3}))?$")


class _SpfSyntaxError(ValueError):
    pass


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


def _parse_spf_terms(record: str) -> str | None:
    """Check every term after ``v=spf1``; returns the ``all`` qualifier (or None)."""
    all_qualifier: str | None = None
    seen_modifiers: set[str] = set()
    for term in record.split()[1:]:
        modifier = _MODIFIER.match(term)
        if modifier is not None:
            name = modifier.group(1).lower()
            if name in ("redirect", "exp"):
                if name in seen_modifiers:
                    raise _SpfSyntaxError(f"duplicate {name}= modifier")
                _check_domain_spec(name, modifier.group(2))
            seen_modifiers.add(name)
            continue
        mechanism = _MECHANISM.match(term)
        if mechanism is None:
            raise _SpfSyntaxError(f"invalid term {term!r}")
        qualifier, name, rest = mechanism.groups()
        name = name.lower()
        _check_mechanism(name, rest)
        if name == "all" and all_qualifier is None:
            all_qualifier = qualifier or "+"
    return all_qualifier


def parse_spf(txt_records: Sequence[str]) -> SpfInfo:
    """The SPF policy among a name's TXT records (RFC 7208).

    Status is ``absent`` (no ``v=spf1`` record), ``multiple`` (more than one: a permerror),
    ``invalid`` (a term does not parse; ``error`` says which) or ``present``.
    ``all_qualifier`` is the first ``all`` mechanism's qualifier (``+`` when implicit).

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
    records = [r.strip() for r in txt_records if _SPF_VERSION.match(r.strip())]
    if not records:
        return SpfInfo(status="absent")
    if len(records) > 1:
        return SpfInfo(
            status="multiple",
            record=records[0],
            error=f"{len(records)} SPF records (RFC 7208 allows one)",
        )
    record = records[0]
    try:
        all_qualifier = _parse_spf_terms(record)
    except _SpfSyntaxError as exc:
        return SpfInfo(status="invalid", record=record, error=str(exc))
    return SpfInfo(status="present", record=record, all_qualifier=all_qualifier)


# --------------------------------------------------------------------------- DMARC

_DMARC_VERSION = re.compile(r"^v[ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)", re.IGNORECASE)
_POLICIES = frozenset({"none", "quarantine", "reject"})


def parse_dmarc(txt_records: Sequence[str]) -> DmarcInfo:
    """The DMARC policy among the TXT records of ``_dmarc.<domain>`` (RFC 7489).

    Records not starting with ``v=DMARC1`` are ignored. Status is ``absent``, ``invalid``
    (``p`` missing or not none|quarantine|reject, a bad ``sp``/``pct``/``rua``, or several
    DMARC records) or ``present``. ``subdomain_policy`` is the effective one (``sp``, else
    ``p``); ``pct`` defaults to 100.

    >>> d = parse_dmarc(["v=DMARC1; p=quarantine; pct=50; "
    ...                  "rua=mailto:a@x.example,mailto:b@y.example"])
    >>> d.status, d.policy, d.subdomain_policy, d.pct, d.rua
    ('present', 'quarantine', 'quarantine', 50, ('mailto:a@x.example', 'mailto:b@y.example'))
    >>> parse_dmarc(["v=spf1 -all"]).status
    'absent'
    >>> d = parse_dmarc(["v=DMARC1; rua=mailto:a@x.example"])
    >>> d.status, d.error
    ('invalid', 'missing p= tag')
    """
    records = [r.strip() for r in txt_records if _DMARC_VERSION.match(r.strip())]
    if not records:
        return DmarcInfo(status="absent")
    if len(records) > 1:
        return DmarcInfo(
            status="invalid",
            record=records[0],
            error=f"{len(records)} DMARC records (RFC 7489 allows one)",
        )
    record = records[0]
    tags: dict[str, str] = {}
    for part in record.split(";")[1:]:
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            return DmarcInfo(status="invalid", record=record, error=f"malformed tag {part!r}")
        tags.setdefault(name, value.strip())

    def invalid(error: str) -> DmarcInfo:
        return DmarcInfo(status="invalid", record=record, error=error)

    if "p" not in tags:
        return invalid("missing p= tag")
    policy = tags["p"].lower()
    if policy not in _POLICIES:
        return invalid(f"invalid p={tags['p']!r} (none|quarantine|reject)")
    subdomain_policy = policy
    if "sp" in tags:
        subdomain_policy = tags["sp"].lower()
        if subdomain_policy not in _POLICIES:
            return invalid(f"invalid sp={tags['sp']!r} (none|quarantine|reject)")
    pct = 100
    if "pct" in tags:
        if not tags["pct"].isdigit() or int(tags["pct"]) > 100:
            return invalid(f"invalid pct={tags['pct']!r} (0-100)")
        pct = int(tags["pct"])
    rua: tuple[str, ...] = ()
    if "rua" in tags:
        rua = tuple(u.strip() for u in tags["rua"].split(",") if u.strip())
        for uri in rua:
            scheme, colon, rest = uri.partition(":")
            if not colon or not rest or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
                return invalid(f"invalid rua URI {uri!r}")
    return DmarcInfo(
        status="present",
        record=record,
        policy=policy,
        subdomain_policy=subdomain_policy,
        pct=pct,
        rua=rua,
    )


# --------------------------------------------------------------------------- DKIM

_DKIM_KEY = re.compile(r"(?:^|;)\s*p\s*=", re.IGNORECASE)
_DKIM_VERSION = re.compile(r"^\s*v\s*=\s*DKIM1\s*(?:;|$)", re.IGNORECASE)


def is_dkim_record(text: str) -> bool:
    """Does this TXT record look like a DKIM key record (a ``p=`` tag or ``v=DKIM1``)?

    >>> is_dkim_record("v=DKIM1; k=rsa; p=MIGfMA0G"), is_dkim_record("k=rsa; p=MIGf")
    (True, True)
    >>> is_dkim_record("v=spf1 -all"), is_dkim_record("ip=1.2.3.4")
    (False, False)
    """
    return bool(_DKIM_KEY.search(text) or _DKIM_VERSION.match(text))


# --------------------------------------------------------------------------- lookups


def _bare(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


async def lookup_spf(resolver: Resolver, domain: str) -> SpfInfo:
    """The domain's SPF record: NXDOMAIN/NODATA → absent, a DNS failure → unknown."""
    try:
        answer = await resolver.query(_bare(domain), "TXT")
    except (NxDomain, NoData):
        return SpfInfo(status="absent")
    except DnsError as exc:
        return SpfInfo(status="unknown", error=str(exc) or type(exc).__name__)
    return parse_spf(answer.records)


async def lookup_dmarc(resolver: Resolver, domain: str) -> DmarcInfo:
    """The ``_dmarc.<domain>`` record: NXDOMAIN/NODATA → absent, a DNS failure → unknown.

    Only the domain itself is asked (no fallback to the organizational domain).
    """
    try:
        answer = await resolver.query(f"_dmarc.{_bare(domain)}", "TXT")
    except (NxDomain, NoData):
        return DmarcInfo(status="absent")
    except DnsError as exc:
        return DmarcInfo(status="unknown", error=str(exc) or type(exc).__name__)
    return parse_dmarc(answer.records)


async def lookup_dkim(
    resolver: Resolver,
    domain: str,
    selectors: Sequence[str] = DEFAULT_DKIM_SELECTORS,
    *,
    concurrency: int = 8,
) -> DkimInfo:
    """Look for DKIM keys at ``<selector>._domainkey.<domain>`` for common selectors.

    Status is ``present`` with the selectors that have a key record (in ``selectors``
    order), else ``unknown`` — never ``absent``: selectors cannot be listed. At most
    ``concurrency`` queries run at once; errors of single lookups are ignored.

    ``_domainkey.<domain>`` is asked first: NXDOMAIN there means no name exists below it
    (RFC 8020), so no selector is asked — one query instead of one per selector for the
    many domains that publish no DKIM key at all.
    """
    base = _bare(domain)
    try:
        await resolver.query(f"_domainkey.{base}", "TXT")
    except NxDomain:
        return DkimInfo(status="unknown")
    except DnsError:
        pass  # NODATA (an empty non-terminal: keys may exist below) or a failure: ask
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def probe(selector: str) -> bool:
        async with semaphore:
            try:
                answer = await resolver.query(f"{selector}._domainkey.{base}", "TXT")
            except DnsError:
                return False
        return any(is_dkim_record(r) for r in answer.records)

    wanted = list(dict.fromkeys(s.strip().lower() for s in selectors if s.strip()))
    found = await asyncio.gather(*(probe(s) for s in wanted))
    present = tuple(s for s, ok in zip(wanted, found, strict=True) if ok)
    if present:
        return DkimInfo(status="present", selectors=present)
    return DkimInfo(status="unknown")
