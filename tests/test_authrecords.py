"""SPF/DMARC parsers and the SPF/DMARC/DKIM lookups (fake resolver, no sockets)."""

from __future__ import annotations

import pytest

from checks.authrecords import (
    DEFAULT_DKIM_SELECTORS,
    is_dkim_record,
    lookup_dkim,
    lookup_dmarc,
    lookup_spf,
    parse_dmarc,
    parse_spf,
)
from checks.dns import DnsFailure, NoData
from checks.model import DkimInfo, DmarcInfo, SpfInfo
from tests.fakes import FakeResolver

# --------------------------------------------------------------------------- SPF


@pytest.mark.parametrize(
    ("record", "qualifier"),
    [
        ("v=spf1 -all", "-"),
        ("v=spf1 mx ~all", "~"),
        ("v=spf1 a ?all", "?"),
        ("v=spf1 +all", "+"),
        ("v=spf1 all", "+"),
        ("V=SPF1 include:_spf.google.com -ALL", "-"),
        ("v=spf1 include:a.example", None),
        ("v=spf1 redirect=_spf.example.net", None),
        ("v=spf1 -all ~all", "-"),  # the first all wins
    ],
)
def test_spf_all_qualifier(record: str, qualifier: str | None) -> None:
    info = parse_spf(["some other txt", record])
    assert info == SpfInfo(status="present", record=record, all_qualifier=qualifier)


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1",
        "v=spf1 ip4:192.0.2.1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip6:::1 -all",
        "v=spf1 a a/24 a:mail.example.com a:mail.example.com/24//64 a//64 mx/30 mx:x.example -all",
        "v=spf1 ptr ptr:example.com exists:%{i}._spf.example.com ?all",
        "v=spf1 include:spf.example.net exp=explain._spf.%{d} unknown-mod=whatever -all",
        "  v=spf1   mx   -all  ",
    ],
)
def test_spf_valid_syntax(record: str) -> None:
    info = parse_spf([record])
    assert info.status == "present", info.error
    assert info.record == record.strip()


@pytest.mark.parametrize(
    ("record", "error_part"),
    [
        ("v=spf1 ip4:192.0.2.0/33 -all", "CIDR"),
        ("v=spf1 ip4:192.0.2.256 -all", "invalid address"),
        ("v=spf1 ip4:2001:db8::1 -all", "invalid address"),
        ("v=spf1 ip6:2001:db8::/129 -all", "CIDR"),
        ("v=spf1 ip4 -all", "ip4 needs"),
        ("v=spf1 a/33 -all", "IPv4 CIDR"),
        ("v=spf1 mx//200 -all", "IPv6 CIDR"),
        ("v=spf1 include -all", "include needs"),
        ("v=spf1 include: -all", "invalid domain"),
        ("v=spf1 all:foo", "no argument"),
        ("v=spf1 foo:bar -all", "unknown mechanism"),
        ("v=spf1 *all", "invalid term"),
        ("v=spf1 redirect=a.example redirect=b.example", "duplicate"),
        ("v=spf1 redirect= -all", "invalid domain"),
    ],
)
def test_spf_invalid(record: str, error_part: str) -> None:
    info = parse_spf([record])
    assert info.status == "invalid"
    assert info.record == record
    assert info.error is not None and error_part in info.error


def test_spf_absent_and_multiple() -> None:
    assert parse_spf([]) == SpfInfo(status="absent")
    assert parse_spf(["v=spf10 -all", "spf1 -all", "xv=spf1"]).status == "absent"
    multiple = parse_spf(["v=spf1 -all", "v=spf1 ~all"])
    assert multiple.status == "multiple"
    assert multiple.error and "2" in multiple.error


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
async def test_lookup_spf() -> None:
    r = FakeResolver({
        ("ok.example", "TXT"): ["google-site-verification=x", "v=spf1 mx -all"],
        ("nospf.example", "MX"): ["10 mx.nospf.example."],
        ("fail.example", "TXT"): DnsFailure("SERVFAIL from 127.0.0.1:53"),
    })
    assert (await lookup_spf(r, "OK.example.")).all_qualifier == "-"
    assert ("ok.example", "TXT") in r.calls
    assert await lookup_spf(r, "nospf.example") == SpfInfo(status="absent")  # NoData
    assert await lookup_spf(r, "missing.example") == SpfInfo(status="absent")  # NXDOMAIN
    failed = await lookup_spf(r, "fail.example")
    assert failed == SpfInfo(status="unknown", error="SERVFAIL from 127.0.0.1:53")


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
