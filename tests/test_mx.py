"""resolve_mx against an in-memory fake resolver (no sockets)."""

from __future__ import annotations

import pytest

from checks.dns import DnsFailure
from checks.model import MxHost, MxResult, MxStatus
from checks.mx import parse_mx_record, resolve_mx
from tests.fakes import FakeResolver


def test_parse_mx_record() -> None:
    assert parse_mx_record("10 MX.Example.COM.") == (10, "mx.example.com")
    assert parse_mx_record("0 .") == (0, "")
    assert parse_mx_record("x mx.") is None
    assert parse_mx_record("10") is None
    assert parse_mx_record("-1 mx.") is None


@pytest.mark.asyncio
async def test_ok_sorted_by_preference_ties_keep_order() -> None:
    r = FakeResolver({
        ("example.com", "MX"): [
            "20 MX-C.Example.com.", "10 mx-b.example.com.", "10 mx-a.example.com.",
        ],
        ("mx-a.example.com", "A"): ["192.0.2.1"],
        ("mx-a.example.com", "AAAA"): ["2001:db8::1"],
        ("mx-b.example.com", "A"): ["192.0.2.2", "192.0.2.3"],
        ("mx-c.example.com", "AAAA"): ["2001:db8::3"],
    })
    result = await resolve_mx(r, "example.com")
    assert result == MxResult(MxStatus.OK, hosts=(
        MxHost(10, "mx-b.example.com", ("192.0.2.2", "192.0.2.3")),
        MxHost(10, "mx-a.example.com", ("192.0.2.1", "2001:db8::1")),
        MxHost(20, "mx-c.example.com", ("2001:db8::3",)),
    ))
    assert not result.implicit and result.error is None


@pytest.mark.asyncio
async def test_domain_is_normalized_and_duplicates_keep_best_preference() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["30 mx.example.com.", "5 MX.example.com."],
        ("mx.example.com", "A"): ["192.0.2.1"],
    })
    result = await resolve_mx(r, "Example.COM.")
    assert result.hosts == (MxHost(5, "mx.example.com", ("192.0.2.1",)),)
    assert ("example.com", "MX") in r.calls


@pytest.mark.asyncio
async def test_address_lookups_run_concurrently() -> None:
    r = FakeResolver({
        ("example.com", "MX"): [f"{i} mx{i}.example.com." for i in range(4)],
        **{(f"mx{i}.example.com", "A"): [f"192.0.2.{i + 1}"] for i in range(4)},
    })
    result = await resolve_mx(r, "example.com")
    assert len(result.hosts) == 4
    assert r.peak == 8  # 4 hosts x (A, AAAA) at once


@pytest.mark.asyncio
async def test_null_mx() -> None:
    r = FakeResolver({("example.com", "MX"): ["0 ."]})
    assert await resolve_mx(r, "example.com") == MxResult(MxStatus.NULL_MX)
    assert r.calls == [("example.com", "MX")]  # nothing else asked


@pytest.mark.asyncio
async def test_root_target_next_to_real_exchanger_is_ignored() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["0 .", "10 mx.example.com."],
        ("mx.example.com", "A"): ["192.0.2.1"],
    })
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.OK
    assert [h.host for h in result.hosts] == ["mx.example.com"]


@pytest.mark.asyncio
async def test_no_domain() -> None:
    r = FakeResolver({})
    assert await resolve_mx(r, "missing.example") == MxResult(MxStatus.NO_DOMAIN)


@pytest.mark.asyncio
async def test_implicit_mx_from_a_and_aaaa() -> None:
    r = FakeResolver({
        ("example.com", "A"): ["192.0.2.9"],
        ("example.com", "AAAA"): ["2001:db8::9"],
    })
    result = await resolve_mx(r, "example.com")
    assert result == MxResult(
        MxStatus.OK, hosts=(MxHost(0, "example.com", ("192.0.2.9", "2001:db8::9")),),
        implicit=True,
    )


@pytest.mark.asyncio
async def test_no_mx_and_no_address_is_no_mx_host() -> None:
    r = FakeResolver({("example.com", "TXT"): ["v=spf1 -all"]})
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.NO_MX_HOST
    assert result.hosts == ()


@pytest.mark.asyncio
async def test_hosts_without_address_are_dropped() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["10 gone.example.com.", "20 mx.example.com."],
        ("mx.example.com", "A"): ["192.0.2.1"],
    })
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.OK
    assert result.hosts == (MxHost(20, "mx.example.com", ("192.0.2.1",)),)


@pytest.mark.asyncio
async def test_no_exchanger_has_an_address() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["10 gone.example.com.", "20 alsogone.example.net."],
        ("gone.example.com", "TXT"): ["exists but no address"],
    })
    assert await resolve_mx(r, "example.com") == MxResult(MxStatus.NO_MX_HOST)


@pytest.mark.asyncio
async def test_ip_literal_targets_are_not_valid() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["10 192.0.2.1.", "20 [2001:db8::1]."],
        ("192.0.2.1", "A"): ["192.0.2.1"],
    })
    assert await resolve_mx(r, "example.com") == MxResult(MxStatus.NO_MX_HOST)
    assert r.calls == [("example.com", "MX")]


@pytest.mark.asyncio
async def test_failure_on_mx_query_is_dns_error() -> None:
    r = FakeResolver({("example.com", "MX"): DnsFailure("timeout: no answer within 3s")})
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.DNS_ERROR
    assert result.error == "timeout: no answer within 3s"


@pytest.mark.asyncio
async def test_failed_address_lookups_are_dns_error_not_no_mx_host() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["10 mx.example.com."],
        ("mx.example.com", "A"): DnsFailure("SERVFAIL from 127.0.0.1:53"),
    })
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.DNS_ERROR
    assert "SERVFAIL" in (result.error or "")


@pytest.mark.asyncio
async def test_failed_lookup_of_one_host_still_ok_with_others() -> None:
    r = FakeResolver({
        ("example.com", "MX"): ["10 bad.example.com.", "20 mx.example.com."],
        ("bad.example.com", "A"): DnsFailure("timeout"),
        ("mx.example.com", "A"): ["192.0.2.1"],
    })
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.OK
    assert [h.host for h in result.hosts] == ["mx.example.com"]


@pytest.mark.asyncio
async def test_implicit_mx_lookup_failure_is_dns_error() -> None:
    r = FakeResolver({("example.com", "A"): DnsFailure("timeout")})
    # "example.com" exists (a key), so MX → NoData; AAAA → NoData, A → failure
    result = await resolve_mx(r, "example.com")
    assert result.status is MxStatus.DNS_ERROR


@pytest.mark.asyncio
async def test_unparseable_mx_answer_is_dns_error() -> None:
    r = FakeResolver({("example.com", "MX"): ["garbage"]})
    assert (await resolve_mx(r, "example.com")).status is MxStatus.DNS_ERROR


@pytest.mark.asyncio
async def test_max_hosts_keeps_the_best() -> None:
    r = FakeResolver({
        ("example.com", "MX"): [f"{i} mx{i}.example.com." for i in range(5, 0, -1)],
        **{(f"mx{i}.example.com", "A"): [f"192.0.2.{i}"] for i in range(1, 6)},
    })
    result = await resolve_mx(r, "example.com", max_hosts=2)
    assert [h.host for h in result.hosts] == ["mx1.example.com", "mx2.example.com"]
