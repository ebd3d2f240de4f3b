"""DMARC parser and the DMARC/DKIM lookups (fake resolver, no sockets); SPF is in
tests/test_spf.py."""

from __future__ import annotations

import pytest

from checks.authrecords import (
    DEFAULT_DKIM_SELECTORS,
    is_dkim_record,
    lookup_dkim,
    lookup_dmarc,
    organizational_domain,
    parse_dmarc,
)
from checks.dns import DnsFailure, NoData
from checks.model import DkimInfo, DmarcInfo
from tests.fakes import FakeResolver

# --------------------------------------------------------------------------- DMARC


def test_dmarc_full_record() -> None:
    record = "v=DMARC1; p=Reject; sp=none; pct=20; rua=mailto:a@x.example, mailto:b@y.example!10m"
    assert parse_dmarc(["v=spf1 -all", record]) == DmarcInfo(
        status="present", record=record, policy="reject", subdomain_policy="none", pct=20,
        rua=("mailto:a@x.example", "mailto:b@y.example!10m"),
    )


def test_dmarc_defaults() -> None:
    info = parse_dmarc(["v=DMARC1;p=none"])
    assert (info.status, info.policy, info.subdomain_policy, info.pct, info.rua) == (
        "present", "none", "none", 100, ())
    assert parse_dmarc(["v = DMARC1 ; p = quarantine ;"]).policy == "quarantine"


@pytest.mark.parametrize(
    ("record", "error_part"),
    [
        ("v=DMARC1", "missing p"),
        ("v=DMARC1; rua=mailto:a@x.example", "missing p"),
        ("v=DMARC1; p=block", "invalid p"),
        ("v=DMARC1; p=", "invalid p"),
        ("v=DMARC1; p=none; sp=maybe", "invalid sp"),
        ("v=DMARC1; p=none; pct=101", "invalid pct"),
        ("v=DMARC1; p=none; pct=-1", "invalid pct"),
        ("v=DMARC1; p=none; rua=a@x.example", "invalid rua"),
        ("v=DMARC1; p=none; garbage", "malformed"),
    ],
)
def test_dmarc_invalid(record: str, error_part: str) -> None:
    info = parse_dmarc([record])
    assert info.status == "invalid"
    assert info.record == record
    assert info.error is not None and error_part in info.error


def test_dmarc_absent_and_multiple() -> None:
    assert parse_dmarc([]) == DmarcInfo(status="absent")
    assert parse_dmarc(["p=reject; v=DMARC1", "v=DMARC2; p=reject"]).status == "absent"
    info = parse_dmarc(["v=DMARC1; p=none", "v=DMARC1; p=reject"])
    assert info.status == "invalid" and info.error and "2 DMARC" in info.error


# --------------------------------------------------------------------------- lookups


@pytest.mark.asyncio
async def test_lookup_dmarc() -> None:
    r = FakeResolver({
        ("_dmarc.ok.example", "TXT"): ["v=DMARC1; p=reject"],
        ("_dmarc.nodata.example", "A"): ["192.0.2.1"],
        ("_dmarc.fail.example", "TXT"): DnsFailure("timeout"),
    })
    assert (await lookup_dmarc(r, "ok.example")).policy == "reject"
    assert r.calls[0] == ("_dmarc.ok.example", "TXT")
    assert await lookup_dmarc(r, "nodata.example") == DmarcInfo(status="absent")
    assert await lookup_dmarc(r, "missing.example") == DmarcInfo(status="absent")
    assert await lookup_dmarc(r, "fail.example") == DmarcInfo(status="unknown", error="timeout")


def test_is_dkim_record() -> None:
    assert is_dkim_record("v=DKIM1; k=rsa; p=MIIBIjANBg")
    assert is_dkim_record("k=rsa;p=MIIBIjANBg")
    assert is_dkim_record("v=DKIM1; p=")  # revoked key: the selector still exists
    assert not is_dkim_record("v=spf1 include:x -all")
    assert not is_dkim_record("hello world")


@pytest.mark.asyncio
async def test_lookup_dkim_present() -> None:
    r = FakeResolver({
        ("_domainkey.example.com", "TXT"): NoData("empty non-terminal"),
        ("selector2._domainkey.example.com", "TXT"): ["v=DKIM1; k=rsa; p=MIGf"],
        ("google._domainkey.example.com", "TXT"): ["k=rsa; p=MIIB"],
        ("s1._domainkey.example.com", "TXT"): ["v=spf1 -all"],  # wildcard junk
        ("k1._domainkey.example.com", "TXT"): DnsFailure("timeout"),
    })
    info = await lookup_dkim(r, "Example.com")
    assert info == DkimInfo(status="present", selectors=("google", "selector2"))
    asked = {name for name, _ in r.calls}
    assert asked == {f"{s}._domainkey.example.com" for s in DEFAULT_DKIM_SELECTORS} | {
        "_domainkey.example.com"}
    assert len(r.calls) == len(DEFAULT_DKIM_SELECTORS) + 1 <= 11
    assert all(t == "TXT" for _, t in r.calls)
    assert 1 < r.peak <= 8  # concurrent, bounded


@pytest.mark.asyncio
async def test_lookup_dkim_none_found_is_unknown_never_absent() -> None:
    r = FakeResolver({("default._domainkey.example.com", "TXT"): DnsFailure("timeout"),
                      ("_domainkey.example.com", "TXT"): NoData("empty non-terminal")})
    assert await lookup_dkim(r, "example.com") == DkimInfo(status="unknown")
    info = await lookup_dkim(r, "example.com", selectors=["custom"], concurrency=1)
    assert info == DkimInfo(status="unknown")
    assert r.calls[-1] == ("custom._domainkey.example.com", "TXT")


@pytest.mark.asyncio
async def test_lookup_dkim_nxdomain_at_domainkey_asks_no_selector() -> None:
    r = FakeResolver({})  # _domainkey.example.com: NXDOMAIN, nothing exists below it
    assert await lookup_dkim(r, "example.com") == DkimInfo(status="unknown")
    assert r.calls == [("_domainkey.example.com", "TXT")]


def test_default_selectors_cover_common_providers() -> None:
    for s in ("google", "selector1", "selector2", "default", "k1", "s1", "s2", "dkim",
              "mail"):
        assert s in DEFAULT_DKIM_SELECTORS
    assert len(set(DEFAULT_DKIM_SELECTORS)) == len(DEFAULT_DKIM_SELECTORS) <= 10


# --------------------------------------------------------------------------- organizational DMARC


@pytest.mark.asyncio
async def test_dmarc_falls_back_to_the_organizational_domain() -> None:
    """RFC 7489 §6.6.3: no record at mail.corp.example.co.uk → the one at example.co.uk
    (the PSL knows co.uk is a public suffix), whose sp= applies to subdomains."""
    r = FakeResolver({
        ("_dmarc.example.co.uk", "TXT"): ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@x.uk"],
        ("_dmarc.own.example.co.uk", "TXT"): ["v=DMARC1; p=none"],
        ("_dmarc.plain.example", "TXT"): ["v=DMARC1; p=reject"],
    })
    inherited = await lookup_dmarc(r, "mail.corp.example.co.uk")
    assert (inherited.status, inherited.policy, inherited.org_domain) == (
        "present", "quarantine", "example.co.uk")
    assert r.calls == [("_dmarc.mail.corp.example.co.uk", "TXT"),
                       ("_dmarc.example.co.uk", "TXT")]  # not each level between
    own = await lookup_dmarc(r, "own.example.co.uk")
    assert (own.policy, own.org_domain) == ("none", None)  # its own record wins
    # no sp=: p applies to subdomains too
    assert (await lookup_dmarc(r, "news.plain.example")).policy == "reject"
    # the organizational domain itself asks once
    r.calls.clear()
    assert (await lookup_dmarc(r, "example.co.uk")).policy == "reject"
    assert len(r.calls) == 1


@pytest.mark.asyncio
async def test_dmarc_fallback_absent_failure_and_broken() -> None:
    r = FakeResolver({
        ("_dmarc.down.example", "TXT"): DnsFailure("SERVFAIL"),
        ("_dmarc.broken.example", "TXT"): ["v=DMARC1; p=maybe"],
        ("_dmarc.sub.err.example", "TXT"): DnsFailure("timeout"),
    })
    assert await lookup_dmarc(r, "a.none.example") == DmarcInfo(status="absent")
    assert await lookup_dmarc(r, "a.down.example") == DmarcInfo(
        status="unknown", error="SERVFAIL", org_domain="down.example")
    broken = await lookup_dmarc(r, "a.broken.example")
    assert (broken.status, broken.org_domain) == ("invalid", "broken.example")
    # a failure at the domain itself is not passed over to the organizational domain
    r.calls.clear()
    assert (await lookup_dmarc(r, "sub.err.example")).status == "unknown"
    assert r.calls == [("_dmarc.sub.err.example", "TXT")]


def test_organizational_domain() -> None:
    assert organizational_domain("a.b.example.com.") == "example.com"
    assert organizational_domain("x.blogspot.com") == "x.blogspot.com"  # a private suffix
    assert organizational_domain("www.xn--bcher-kva.de") == "xn--bcher-kva.de"
    assert organizational_domain("mail.example.test") == "example.test"
