"""SPF: the parser of one record, and the evaluation of a record tree (includes, redirect,
the lookup limits) on record shapes seen on real domains (fake resolver, no sockets)."""

from __future__ import annotations

import pytest

from checks.dns import DnsFailure
from checks.model import SpfInfo
from checks.spf import lookup_spf, parse_spf
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
    assert (info.status, info.record, info.all_qualifier) == ("present", record, qualifier)


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
    assert failed == SpfInfo(status="unknown", error="SERVFAIL from 127.0.0.1:53",
                             errors=("SERVFAIL from 127.0.0.1:53",))


# --------------------------------------------------------------------------- record trees

GOOGLE = {
    ("_spf.google.com", "TXT"): ["v=spf1 include:_netblocks.google.com "
                                 "include:_netblocks2.google.com "
                                 "include:_netblocks3.google.com ~all"],
    ("_netblocks.google.com", "TXT"): ["v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ~all"],
    ("_netblocks2.google.com", "TXT"): ["v=spf1 ip6:2001:4860:4000::/36 ~all"],
    ("_netblocks3.google.com", "TXT"): ["v=spf1 ip4:172.217.32.0/20 ~all"],
}
MICROSOFT = {
    ("spf.protection.outlook.com", "TXT"): ["v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 "
                                            "include:spfd.protection.outlook.com -all"],
    ("spfd.protection.outlook.com", "TXT"): ["v=spf1 ip4:51.4.72.0/24 -all"],
}


@pytest.mark.asyncio
async def test_nested_includes_are_followed_and_counted() -> None:
    """Google Workspace's shape: one include that includes three netblock records."""
    r = FakeResolver({("corp.example", "TXT"): ["v=spf1 include:_spf.google.com ~all"],
                      **GOOGLE})
    info = await lookup_spf(r, "corp.example")
    assert info.status == "present", info.errors
    assert (info.lookups, info.void_lookups, info.all_qualifier) == (4, 0, "~")
    assert set(info.followed) == {"_spf.google.com", "_netblocks.google.com",
                                  "_netblocks2.google.com", "_netblocks3.google.com"}
    assert info.errors == () and info.error is None


@pytest.mark.asyncio
async def test_more_than_ten_lookups_is_a_permerror() -> None:
    """The classic overgrown record: Microsoft 365 + Google + three senders + a mx ptr."""
    r = FakeResolver({
        ("shop.example", "TXT"): [
            "v=spf1 include:spf.protection.outlook.com include:_spf.google.com "
            "include:servers.mcsv.net include:sendgrid.net a mx ptr -all"],
        ("servers.mcsv.net", "TXT"): ["v=spf1 ip4:205.201.128.0/20 -all"],
        ("sendgrid.net", "TXT"): ["v=spf1 ip4:167.89.0.0/17 -all"],
        **GOOGLE, **MICROSOFT,
    })
    info = await lookup_spf(r, "shop.example")
    assert info.status == "permerror"
    assert info.lookups == 11  # 7 at the top, 1 in outlook's, 3 in google's
    assert info.error == "11 DNS-querying terms (RFC 7208 allows 10)"
    assert info.all_qualifier == "-"


@pytest.mark.asyncio
async def test_exactly_ten_lookups_is_fine() -> None:
    r = FakeResolver({
        ("ten.example", "TXT"): ["v=spf1 include:_spf.google.com a mx ptr exists:x.example "
                                 "include:b.example mx:b.example -all"],
        ("b.example", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
        **GOOGLE,
    })
    info = await lookup_spf(r, "ten.example")
    assert (info.status, info.lookups) == ("present", 10), info.errors


@pytest.mark.asyncio
async def test_redirect_gives_the_effective_all() -> None:
    r = FakeResolver({
        ("brand.example", "TXT"): ["v=spf1 redirect=_spf.brand.example"],
        ("_spf.brand.example", "TXT"): ["v=spf1 ip4:192.0.2.0/24 include:_spf.google.com -all"],
        **GOOGLE,
    })
    info = await lookup_spf(r, "brand.example")
    assert (info.status, info.all_qualifier, info.lookups) == ("present", "-", 5)
    assert parse_spf(["v=spf1 redirect=_spf.brand.example"]).all_qualifier is None


@pytest.mark.asyncio
async def test_redirect_is_ignored_when_the_record_has_all() -> None:
    r = FakeResolver({("both.example", "TXT"): ["v=spf1 mx ?all redirect=gone.example"]})
    info = await lookup_spf(r, "both.example")
    assert (info.status, info.all_qualifier, info.lookups) == ("present", "?", 1)
    assert ("gone.example", "TXT") not in r.calls


@pytest.mark.asyncio
async def test_an_include_without_spf_is_a_permerror_and_void() -> None:
    r = FakeResolver({
        ("old.example", "TXT"): ["v=spf1 include:gone.example include:notspf.example -all"],
        ("notspf.example", "TXT"): ["some verification token"],
    })
    info = await lookup_spf(r, "old.example")
    assert info.status == "permerror"
    assert info.void_lookups == 1  # NXDOMAIN is void; a TXT without SPF is not
    assert "include:gone.example has no SPF record" in info.errors
    assert "include:notspf.example has no SPF record" in info.errors


@pytest.mark.asyncio
async def test_more_than_two_void_lookups() -> None:
    r = FakeResolver({("void.example", "TXT"): [
        "v=spf1 include:a.gone.example include:b.gone.example include:c.gone.example -all"]})
    info = await lookup_spf(r, "void.example")
    assert (info.status, info.void_lookups) == ("permerror", 3)
    assert info.error == "3 void lookups (RFC 7208 allows 2)"


@pytest.mark.asyncio
async def test_loops_syntax_errors_and_failures_deeper_in_the_tree() -> None:
    r = FakeResolver({
        ("loop.example", "TXT"): ["v=spf1 include:other.example -all"],
        ("other.example", "TXT"): ["v=spf1 include:loop.example -all"],
        ("deep.example", "TXT"): ["v=spf1 include:bad.example -all"],
        ("bad.example", "TXT"): ["v=spf1 ipv4:192.0.2.1 -all"],
        ("flaky.example", "TXT"): ["v=spf1 include:down.example -all"],
        ("down.example", "TXT"): DnsFailure("timeout"),
    })
    loop = await lookup_spf(r, "loop.example")
    assert loop.status == "permerror"
    assert loop.errors == ("include:loop.example loops back to itself",)
    deep = await lookup_spf(r, "deep.example")
    assert deep.status == "permerror"
    assert deep.error == "include:bad.example: unknown mechanism 'ipv4'"
    flaky = await lookup_spf(r, "flaky.example")
    assert flaky.status == "unknown"  # a temperror: asked again later, not a broken record
    assert flaky.error == "include:down.example: timeout"


@pytest.mark.asyncio
async def test_a_hostile_tree_costs_at_most_the_limit() -> None:
    wide = " ".join(f"include:n{i}.wide.example" for i in range(8))
    data: dict[tuple[str, str], list[str] | Exception] = {
        ("wide.example", "TXT"): [f"v=spf1 {wide} -all"]}
    for i in range(8):
        data[(f"n{i}.wide.example", "TXT")] = [
            "v=spf1 " + " ".join(f"include:m{j}.n{i}.wide.example" for j in range(8)) + " -all"]
    r = FakeResolver(data)
    info = await lookup_spf(r, "wide.example")
    assert info.status == "permerror" and info.lookups > 10
    assert len(r.calls) <= 1 + 10


@pytest.mark.asyncio
async def test_a_macro_target_is_counted_not_followed() -> None:
    r = FakeResolver({("macro.example", "TXT"): ["v=spf1 include:%{d}._spf.macro.example -all"]})
    info = await lookup_spf(r, "macro.example")
    assert (info.status, info.lookups, info.followed) == ("present", 1, ())
    assert len(r.calls) == 1


