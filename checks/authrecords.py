"""DMARC and DKIM evidence: pure parsers of TXT records, and the lookups around them
(SPF, which has a record tree to follow, is :mod:`checks.spf`).

>>> parse_dmarc(["v=DMARC1; p=reject; rua=mailto:d@example.com"]).policy
'reject'
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
from collections.abc import Sequence

from publicsuffixlist import PublicSuffixList

from checks.dns import DnsError, NoData, NxDomain, Resolver
from checks.model import DkimInfo, DmarcInfo

__all__ = [
    "DEFAULT_DKIM_SELECTORS",
    "parse_dmarc",
    "is_dkim_record",
    "lookup_dmarc",
    "organizational_domain",
    "lookup_dkim",
    "load_suffix_list",
]

#: selectors tried by :func:`lookup_dkim`: the defaults of the largest providers (Google,
#: Microsoft 365, cPanel/Plesk, Mailchimp/Mandrill, Fastmail, Zoho, SES-style s1/s2…).
#: Ten, so a domain seen for the first time costs at most 16 queries in all.
DEFAULT_DKIM_SELECTORS: tuple[str, ...] = (
    "google", "selector1", "selector2", "default", "k1", "s1", "s2", "dkim", "mail",
    "fm1",
)

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


@functools.cache
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped with publicsuffixlist (loaded once: ~60 ms)


def load_suffix_list() -> None:
    """Load the Public Suffix List now, once per process. A worker does it at start: at
    its first DMARC lookup the load held the event loop for 60-90 ms, just when every MX
    host got its first RCPT permits, and each permit due meanwhile came late."""
    _suffix_list()


def organizational_domain(domain: str) -> str:
    """The domain's organizational domain (RFC 7489 §3.2): one label below its public suffix,
    by the Public Suffix List. An unknown TLD counts as a public suffix of one label.

    >>> organizational_domain("mail.corp.example.co.uk"), organizational_domain("example.com")
    ('example.co.uk', 'example.com')
    >>> organizational_domain("sub.ok.test"), organizational_domain("co.uk")
    ('ok.test', 'co.uk')
    """
    bare = _bare(domain)
    return _suffix_list().privatesuffix(bare) or bare


async def _dmarc_at(resolver: Resolver, domain: str) -> DmarcInfo:
    try:
        answer = await resolver.query(f"_dmarc.{domain}", "TXT")
    except (NxDomain, NoData):
        return DmarcInfo(status="absent")
    except DnsError as exc:
        return DmarcInfo(status="unknown", error=str(exc) or type(exc).__name__)
    return parse_dmarc(answer.records)


async def lookup_dmarc(resolver: Resolver, domain: str) -> DmarcInfo:
    """The DMARC policy of ``domain``: ``_dmarc.<domain>``, else (no DMARC record there)
    ``_dmarc.<organizational domain>`` (RFC 7489 §6.6.3), whose ``sp`` then applies.

    NXDOMAIN/NODATA at both → absent; a DNS failure → unknown (no fallback past it).
    """
    base = _bare(domain)
    own = await _dmarc_at(resolver, base)
    org = organizational_domain(base)
    if own.status != "absent" or org == base:
        return own
    inherited = await _dmarc_at(resolver, org)
    if inherited.status == "absent":
        return own
    if inherited.status != "present":
        return dataclasses.replace(inherited, org_domain=org)
    return dataclasses.replace(inherited, policy=inherited.subdomain_policy, org_domain=org)


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
