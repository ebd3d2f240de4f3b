"""Probes of one route merged while its sessions are busy (``checks.coalesce``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from checks.coalesce import CoalescingProber
from checks.model import MxHost, MxResult, MxStatus, RcptResult, Reason
from checks.probe import ProbeReport
from tests.garbage import cyclic_garbage

pytestmark = pytest.mark.asyncio

ROUTE = MxResult(MxStatus.OK, (MxHost(10, "mx.example.test", ("192.0.2.1",)),))
OTHER = MxResult(MxStatus.OK, (MxHost(10, "mx.other.test", ("192.0.2.2",)),))


class SlowProber:
    """Answers every recipient after ``seconds``; records the calls; can be made to fail."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: Exception | None = None

    async def probe(self, mx: MxResult, recipients: Sequence[str]) -> ProbeReport:
        self.calls.append((mx.hosts[0].host, list(recipients)))
        await asyncio.sleep(self.seconds)
        if self.fail is not None:
            raise self.fail
        return ProbeReport({r: RcptResult(None, None, Reason.OK, mx_host=mx.hosts[0].host)
                            for r in recipients}, connections=1)


def coalescing(inner: SlowProber, *, slots: int = 2, interval: float = 0.0,
               seconds: float = 30.0, most: int = 100) -> CoalescingProber:
    return CoalescingProber(inner, lambda ip: slots, lambda ip: interval, seconds=seconds,
                            max_recipients=most)


async def test_probes_past_the_hosts_sessions_wait_and_go_as_one() -> None:
    inner = SlowProber()
    prober = coalescing(inner, slots=2)
    asked = [[f"a{i}@d{i}.test", f"b{i}@d{i}.test"] for i in range(6)]
    reports = await asyncio.gather(*(prober.probe(ROUTE, r) for r in asked))
    # two at once (the host's two sessions), the four that waited as one
    assert [len(c[1]) for c in inner.calls] == [2, 2, 8]
    for recipients, report in zip(asked, reports, strict=True):
        assert sorted(report.results) == sorted(recipients)  # its own replies only
    # the merged probe's connection is counted once, not once per caller
    assert sum(r.connections for r in reports) == 3
    assert (prober.probes, prober.merged) == (3, 6)


async def test_merged_probes_leave_no_cyclic_garbage() -> None:
    """A merged probe and its callers are freed as they end: a cycle per merged probe
    (each caller referring to its batch, the batch to each caller) left every reply it
    carried to the cyclic collector, whose pauses made RCPT permits late."""
    inner = SlowProber(seconds=0.01)
    prober = coalescing(inner, slots=1)
    with cyclic_garbage() as found:
        reports = await asyncio.gather(*(prober.probe(ROUTE, [f"u@d{i}.test"])
                                         for i in range(6)))
        await asyncio.sleep(0)  # the merged probes' tasks are done and discarded
        del reports
    left = [type(o).__name__ for o in found
            if isinstance(o, ProbeReport | RcptResult | asyncio.Future)
            or type(o).__module__ == "checks.coalesce"]
    assert [len(c[1]) for c in inner.calls] == [1, 5]  # a merged probe ran
    assert left == []


async def test_an_idle_route_runs_a_probe_at_once_and_routes_do_not_mix() -> None:
    inner = SlowProber(seconds=0.2)
    prober = coalescing(inner, slots=1)
    started = asyncio.get_running_loop().time()
    one, other = await asyncio.gather(prober.probe(ROUTE, ["u@a.test"]),
                                      prober.probe(OTHER, ["u@b.test"]))
    assert asyncio.get_running_loop().time() - started < 0.35  # side by side
    assert sorted(inner.calls) == [("mx.example.test", ["u@a.test"]),
                                   ("mx.other.test", ["u@b.test"])]
    assert one.results["u@a.test"].mx_host == "mx.example.test"
    assert other.results["u@b.test"].mx_host == "mx.other.test"


async def test_a_merged_probe_is_no_longer_than_the_rate_allows_in_its_time() -> None:
    """At 0.5 s per RCPT on 2 sessions, 10 s let 10 recipients through: the waiting
    probes go in groups of at most 10, and one bigger than that alone."""
    inner = SlowProber(seconds=0.02)
    prober = coalescing(inner, slots=2, interval=0.5, seconds=10.0)
    sizes = [1, 4, 4, 4, 12, 3]
    await asyncio.gather(*(prober.probe(ROUTE, [f"u{j}@d{i}.test" for j in range(n)])
                           for i, n in enumerate(sizes)))
    assert [len(c[1]) for c in inner.calls] == [1, 4, 8, 12, 3]


async def test_a_caller_that_gives_up_leaves_the_others_probe_running() -> None:
    inner = SlowProber(seconds=0.1)
    prober = coalescing(inner, slots=1)
    first = asyncio.ensure_future(prober.probe(ROUTE, ["u@a.test"]))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(prober.probe(ROUTE, [f"u@w{i}.test"]))
               for i in range(3)]
    await asyncio.sleep(0.15)  # the three run as one now
    waiting[0].cancel()
    early = asyncio.ensure_future(prober.probe(ROUTE, ["u@late.test"]))
    await asyncio.sleep(0)
    early.cancel()  # given up before its probe started: never asked
    results = await asyncio.gather(first, *waiting, early, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[4], asyncio.CancelledError)
    assert [sorted(r.results) for r in results[2:4]] == [["u@w1.test"], ["u@w2.test"]]
    assert [c[1] for c in inner.calls] == [["u@a.test"],
                                           ["u@w0.test", "u@w1.test", "u@w2.test"]]
    assert not prober._routes and not prober._tasks  # nothing left behind


async def test_a_merged_probe_whose_callers_all_gave_up_is_cancelled() -> None:
    inner = SlowProber(seconds=0.1)
    cancelled: list[bool] = []
    real = inner.probe

    async def probe(mx: MxResult, recipients: Sequence[str]) -> ProbeReport:
        try:
            return await real(mx, recipients)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    inner.probe = probe  # type: ignore[method-assign]
    prober = coalescing(inner, slots=1)
    first = asyncio.ensure_future(prober.probe(ROUTE, ["u@a.test"]))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(prober.probe(ROUTE, [f"u@w{i}.test"]))
               for i in range(2)]
    await first
    await asyncio.sleep(0.02)  # the two run as one now
    waiting[0].cancel()
    await asyncio.sleep(0.01)
    assert not cancelled  # one caller still waits for it
    waiting[1].cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert cancelled == [True]
    assert not prober._routes and not prober._tasks


async def test_a_failing_merged_probe_fails_each_of_its_callers() -> None:
    inner = SlowProber(seconds=0.05)
    prober = coalescing(inner, slots=1)
    first = asyncio.ensure_future(prober.probe(ROUTE, ["u@a.test"]))
    await asyncio.sleep(0)
    inner.fail = RuntimeError("broken")
    rest = [asyncio.ensure_future(prober.probe(ROUTE, [f"u@w{i}.test"])) for i in range(2)]
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(inner.calls) == 2
