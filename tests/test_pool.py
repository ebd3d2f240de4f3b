"""Per-MX session pools and pipelining, against scripted in-memory servers (no sockets)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from checks.model import MxHost, MxResult, MxStatus, Reason, ReplyClass, SmtpReply
from checks.politeness import LocalPoliteness
from checks.pool import HostBackoff, MxPool, PoolConfig
from checks.probe import ProbeConfig, SmtpProber
from tests.fakes import FakeConnector, FakeServer

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
UNKNOWN = SmtpReply(550, "user unknown", "5.1.1")


def mx(*ips: str) -> MxResult:
    return MxResult(MxStatus.OK, tuple(MxHost(10 * i, f"mx{i}.x.test", (ip,))
                                       for i, ip in enumerate(ips)))


def prober(servers: dict[str, FakeServer], *, max_connections: int = 2,
           rcpt_per_second: float = 1000, idle: float = 5.0,
           **cfg: object) -> tuple[SmtpProber, FakeConnector]:
    conn = FakeConnector(servers)
    politeness = LocalPoliteness(max_connections=max_connections,
                                 rcpt_per_second=rcpt_per_second)
    pool = MxPool(conn, politeness, PoolConfig(max_connections=max_connections,
                                               idle_seconds=idle, busy_pause=0.01),
                  jitter=lambda: 1.0)
    config = ProbeConfig(allowed_networks=LOOPBACK, **cfg)  # type: ignore[arg-type]
    return SmtpProber(conn, politeness, config, pool=pool), conn


@pytest.mark.asyncio
async def test_domains_of_one_mx_share_its_session_with_rset_between_them() -> None:
    server = FakeServer()
    p, conn = prober({"127.0.0.1": server})
    for domain in ("a.test", "b.test", "c.test"):
        report = await p.probe(mx("127.0.0.1"), [f"u@{domain}"])
        assert report.results[f"u@{domain}"].reply_class is ReplyClass.ACCEPTED
    assert conn.opened == ["127.0.0.1"] and server.sessions == 1
    assert server.log.count("RSET") == 2 and server.log.count("EHLO verify.mailsift.invalid") == 1
    assert p.pool.stats.reused == 2
    await p.pool.aclose()
    assert server.log[-1] == "QUIT" and server.open == 0


@pytest.mark.asyncio
async def test_idle_session_is_closed_after_idle_seconds() -> None:
    server = FakeServer()
    p, _ = prober({"127.0.0.1": server}, idle=0.05)
    await p.probe(mx("127.0.0.1"), ["u@a.test"])
    assert server.open == 1
    await asyncio.sleep(0.15)
    assert server.open == 0 and server.log[-1] == "QUIT"
    assert p.pool.open_sessions("127.0.0.1") == 0


@pytest.mark.asyncio
async def test_pool_never_opens_more_than_the_limit_and_groups_wait_their_turn() -> None:
    server = FakeServer()
    p, _ = prober({"127.0.0.1": server}, max_connections=2)
    peak = 0

    async def one(i: int) -> None:
        nonlocal peak
        report = await p.probe(mx("127.0.0.1"), [f"u{i}@d{i}.test"])
        peak = max(peak, server.open)
        assert report.results[f"u{i}@d{i}.test"].reply_class is ReplyClass.ACCEPTED

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 5)
    assert server.sessions <= 2 and peak <= 2
    await p.pool.aclose()


@pytest.mark.asyncio
async def test_pipelined_rcpts_go_in_one_group_and_replies_match_in_order() -> None:
    def reply(rcpt: str, n: int) -> SmtpReply:
        return UNKNOWN if rcpt.startswith("no") else SmtpReply(250, "OK", "2.1.5")

    server = FakeServer(reply, pipelining=True)
    p, _ = prober({"127.0.0.1": server})
    rcpts = ["a@x.test", "no1@x.test", "b@x.test", "no2@x.test"]
    report = await p.probe(mx("127.0.0.1"), rcpts)
    assert "PIPELINED 0+1+4" in server.log  # MAIL FROM and every RCPT in one write
    assert [report.results[r].reply_class for r in rcpts] == [
        ReplyClass.ACCEPTED, ReplyClass.MAILBOX_NOT_FOUND, ReplyClass.ACCEPTED,
        ReplyClass.MAILBOX_NOT_FOUND]
    await p.pool.aclose()


@pytest.mark.asyncio
async def test_lock_step_without_pipelining_and_groups_follow_the_rcpt_budget() -> None:
    plain = FakeServer()
    p, _ = prober({"127.0.0.1": plain})
    await p.probe(mx("127.0.0.1"), [f"u{i}@x.test" for i in range(3)])
    assert not any(c.startswith("GROUP") for c in plain.log)

    # 200 RCPT/s: permits 5.5 ms apart, the ones within 50 ms go out together (10), the
    # first ones with the MAIL FROM
    piped = FakeServer(pipelining=True)
    p, _ = prober({"127.0.0.2": piped}, rcpt_per_second=200)
    await p.probe(mx("127.0.0.2"), [f"u{i}@x.test" for i in range(12)])
    assert [c for c in piped.log if c.startswith(("GROUP", "PIPELINED"))] == [
        "PIPELINED 0+1+10", "GROUP 2"]

    # 2 RCPT/s: permits 0.515 s apart, nothing grouped even when the server pipelines
    slow = FakeServer(pipelining=True)
    p, _ = prober({"127.0.0.3": slow}, rcpt_per_second=2)
    started = asyncio.get_running_loop().time()
    await p.probe(mx("127.0.0.3"), [f"u{i}@x.test" for i in range(3)])
    assert asyncio.get_running_loop().time() - started >= 1.0
    assert not any(c.startswith("GROUP") for c in slow.log)
    assert "PIPELINED 0+1+1" in slow.log  # the first one still goes with its MAIL FROM
    await p.pool.aclose()


@pytest.mark.asyncio
async def test_refusing_host_backs_off_and_is_not_dialled_again() -> None:
    servers = {"127.0.0.1": FakeServer(refuse=True), "127.0.0.2": FakeServer()}
    p, conn = prober(servers)
    first = await p.probe(mx("127.0.0.1"), ["u@a.test"])
    assert first.results["u@a.test"].reason is Reason.CONNECTION_FAILED
    second = await p.probe(mx("127.0.0.1"), ["u@b.test"])
    assert second.results["u@b.test"].reason is Reason.CONNECTION_FAILED
    assert "backing off" in (second.results["u@b.test"].error or "")
    assert conn.opened == ["127.0.0.1"]  # not dialled again
    # a domain with a backup MX goes straight to it
    third = await p.probe(mx("127.0.0.1", "127.0.0.2"), ["u@c.test"])
    assert third.results["u@c.test"].mx_address == "127.0.0.2"
    assert conn.opened == ["127.0.0.1", "127.0.0.2"]
    with pytest.raises(HostBackoff):
        await p.pool.acquire("mx0.x.test", "127.0.0.1")
    await p.pool.aclose()


@pytest.mark.asyncio
async def test_groups_waiting_for_a_host_that_fails_are_told_at_once() -> None:
    # the bug this guards against: waiters of a host that went into back-off were never
    # woken, and their domains stalled the whole partition
    server = FakeServer(refuse=True)
    p, _ = prober({"127.0.0.1": server}, max_connections=1)
    reports = await asyncio.wait_for(asyncio.gather(
        *(p.probe(mx("127.0.0.1"), [f"u@d{i}.test"]) for i in range(5))), 3)
    assert all(r.results[f"u@d{i}.test"].reason is Reason.CONNECTION_FAILED
               for i, r in enumerate(reports))


@pytest.mark.asyncio
async def test_421_while_we_hold_a_session_lowers_the_limit_instead_of_failing() -> None:
    server = FakeServer(max_sessions=1)
    p, _ = prober({"127.0.0.1": server}, max_connections=2)
    reports = await asyncio.wait_for(asyncio.gather(
        *(p.probe(mx("127.0.0.1"), [f"u@d{i}.test"]) for i in range(6))), 5)
    assert all(r.results[f"u@d{i}.test"].reply_class is ReplyClass.ACCEPTED
               for i, r in enumerate(reports))
    assert server.sessions == 1 and p.pool.stats.backoffs == 0
    await p.pool.aclose()


@pytest.mark.asyncio
async def test_too_many_recipients_on_a_reused_session_reconnects() -> None:
    # 452 from the 3rd RCPT of a connection, whatever the transaction (RSET resets nothing)
    def limit(rcpt: str, n: int) -> SmtpReply:
        return SmtpReply(250, "OK", "2.1.5") if n <= 2 else SmtpReply(
            452, "Too many recipients", "4.5.3")

    server = FakeServer(limit)
    p, _ = prober({"127.0.0.1": server})
    for domain in ("a.test", "b.test", "c.test"):
        report = await p.probe(mx("127.0.0.1"), [f"u@{domain}"])
        assert report.results[f"u@{domain}"].reply_class is ReplyClass.ACCEPTED
    assert server.sessions == 2
    await p.pool.aclose()


class LosableLease:
    """A local slot a test can lose, as a :class:`checks.politeness.WatchedLease` (what
    Redis's leases are)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lost = False
        self._on_lost: Any = None

    async def __aenter__(self) -> None:
        await self.inner.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.inner.__aexit__(*exc)

    def watch(self, on_lost: Any) -> None:
        self._on_lost = on_lost

    def lose(self) -> None:
        self.lost = True
        if self._on_lost is not None:
            self._on_lost()


class LosingPoliteness(LocalPoliteness):
    """Hands out leases that a test can mark lost (as Redis does when a lease vanished)."""

    def __init__(self) -> None:
        super().__init__(max_connections=2, rcpt_per_second=1000)
        self.leases: list[LosableLease] = []

    def connection(self, mx_ip: str) -> Any:
        lease = LosableLease(super().connection(mx_ip))
        self.leases.append(lease)
        return lease


@pytest.mark.asyncio
async def test_a_session_whose_lease_was_lost_is_closed_not_reused() -> None:
    server = FakeServer()
    conn = FakeConnector({"127.0.0.1": server})
    politeness = LosingPoliteness()
    pool = MxPool(conn, politeness, PoolConfig(max_connections=2))
    p = SmtpProber(conn, politeness, ProbeConfig(allowed_networks=LOOPBACK), pool=pool)
    await p.probe(mx("127.0.0.1"), ["u@a.test"])
    politeness.leases[0].lost = True  # e.g. Redis restarted without its data
    await p.probe(mx("127.0.0.1"), ["u@b.test"])
    assert server.sessions == 2 and pool.stats.reused == 0
    assert server.log.count("QUIT") == 1  # the first session was closed politely
    await pool.aclose()
    assert server.open == 0


@pytest.mark.asyncio
async def test_a_lease_lost_mid_session_drops_it_and_the_rest_is_asked_on_a_new_one(
        ) -> None:
    """The slot vanished while a domain's RCPTs were going out (a renewal that could not
    get through in time): the session is dropped at once, without QUIT, and the
    recipients not yet answered are asked on a new session, with no back-off."""
    politeness = LosingPoliteness()

    def rcpt(recipient: str, n: int) -> SmtpReply:
        if len(politeness.leases) == 1 and n == 2:
            politeness.leases[0].lose()
        return SmtpReply(250, "OK", "2.1.5")

    server = FakeServer(rcpt)
    conn = FakeConnector({"127.0.0.1": server})
    pool = MxPool(conn, politeness, PoolConfig(max_connections=2))
    p = SmtpProber(conn, politeness, ProbeConfig(allowed_networks=LOOPBACK), pool=pool)
    rcpts = [f"u{i}@a.test" for i in range(4)]
    report = await p.probe(mx("127.0.0.1"), rcpts)
    assert [report.results[r].reply_class for r in rcpts] == [ReplyClass.ACCEPTED] * 4
    assert server.sessions == 2 and pool.stats.backoffs == 0
    assert server.log.count("ABORT") == 1
    assert server.log.count("RCPT u2@a.test") == 1  # asked once, on the new session
    await pool.aclose()
    assert server.open == 0


@pytest.mark.asyncio
async def test_idle_hosts_are_forgotten_but_not_the_ones_backing_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import checks.pool

    monkeypatch.setattr(checks.pool, "_MAX_IDLE_HOSTS", 3)
    servers = {f"127.0.4.{i}": FakeServer() for i in range(1, 6)}
    servers["127.0.4.9"] = FakeServer(refuse=True)
    p, _ = prober(servers, idle=0.01)
    await p.probe(mx("127.0.4.9"), ["u@down.test"])  # refused: backing off
    for i in range(1, 6):
        await p.probe(mx(f"127.0.4.{i}"), [f"u@d{i}.test"])
        await asyncio.sleep(0.05)  # its session went idle and was closed
    hosts = p.pool._hosts
    assert len(hosts) <= 4 and "127.0.4.9" in hosts and "127.0.4.5" in hosts
    await p.pool.aclose()


def test_what_a_host_showed_of_itself_is_forgotten_after_a_day() -> None:
    """A learned transaction limit or broken TLS is kept for PoolConfig.learned_seconds
    (a day), each from when it was learned, then the host is asked as any other again:
    servers get fixed."""
    now = [1000.0]
    pool = MxPool(FakeConnector({}), LocalPoliteness(max_connections=2, rcpt_per_second=10),
                  PoolConfig(learned_seconds=86400.0), clock=lambda: now[0])
    pool.learn_transaction_limit("127.0.0.1", 1)
    pool.learn_tls_broken("127.0.0.2")
    now[0] += 86399.0
    assert pool.transaction_limit("127.0.0.1") == 1 and pool.tls_broken("127.0.0.2")
    now[0] += 2.0
    assert pool.transaction_limit("127.0.0.1") is None
    assert not pool.tls_broken("127.0.0.2")
    pool.learn_transaction_limit("127.0.0.1", 3)  # learned again: another day
    now[0] += 86000.0
    assert pool.transaction_limit("127.0.0.1") == 3
    assert "127.0.0.2" not in pool._hosts or not pool.tls_broken("127.0.0.2")


def test_learning_one_fact_of_a_host_keeps_the_other_no_longer() -> None:
    now = [1000.0]
    pool = MxPool(FakeConnector({}), LocalPoliteness(max_connections=2, rcpt_per_second=10),
                  PoolConfig(learned_seconds=100.0), clock=lambda: now[0])
    pool.learn_tls_broken("127.0.0.1")
    now[0] += 90.0
    pool.learn_transaction_limit("127.0.0.1", 2)  # does not keep the TLS fact longer
    now[0] += 11.0
    assert not pool.tls_broken("127.0.0.1")
    assert pool.transaction_limit("127.0.0.1") == 2
    pool.learn_tls_broken("127.0.0.1")  # nor the other way round
    now[0] += 90.0
    assert pool.transaction_limit("127.0.0.1") is None
    assert pool.tls_broken("127.0.0.1")


@pytest.mark.asyncio
async def test_a_group_waiting_for_a_slot_takes_our_session_when_it_comes_back() -> None:
    """Every slot of the host is held: one by another worker, one by our session. A second
    group of ours waits for a slot; when our session is given back, it goes on that one
    at once instead of waiting for a slot and a new connection."""
    server = FakeServer()
    p, conn = prober({"127.0.0.1": server}, rcpt_per_second=40)
    async with p.politeness.connection("127.0.0.1"):  # another worker's
        first = asyncio.ensure_future(
            p.probe(mx("127.0.0.1"), [f"u{i}@a.test" for i in range(4)]))
        await asyncio.sleep(0.02)  # it has the session
        started = asyncio.get_running_loop().time()
        report = await asyncio.wait_for(p.probe(mx("127.0.0.1"), ["u@b.test"]), 2)
        assert asyncio.get_running_loop().time() - started < 0.5  # not after idle (5 s)
        assert report.results["u@b.test"].reply_class is ReplyClass.ACCEPTED
        await first
    assert conn.opened == ["127.0.0.1"] and server.sessions == 1
    assert p.pool.stats.reused == 1
    await p.pool.aclose()


class SharedPoliteness(LosingPoliteness):
    """Says how many workers have work for every host (Redis tells it at each request
    for a slot and each renewal)."""

    def __init__(self) -> None:
        super().__init__()
        self.workers = 2

    def sharers(self, mx_ip: str) -> int:
        return self.workers


@pytest.mark.asyncio
async def test_a_pool_keeps_to_its_share_of_a_host_other_workers_have_work_for() -> None:
    """Two workers with work for a host of two slots: this one opens one session, and
    its groups take turns on it (no second connection to hand back and forth). More
    workers than slots: a session given back waits only ``crowded_idle_seconds`` for the
    next group. Alone again: both slots, each kept ``idle_seconds``."""
    server = FakeServer()
    conn = FakeConnector({"127.0.0.1": server})
    politeness = SharedPoliteness()
    pool = MxPool(conn, politeness, PoolConfig(max_connections=2, idle_seconds=5.0,
                                               crowded_idle_seconds=0.05))
    a = await pool.acquire("mx", "127.0.0.1")
    second = asyncio.ensure_future(pool.acquire("mx", "127.0.0.1"))
    await asyncio.sleep(0.05)
    assert not second.done() and pool.open_sessions("127.0.0.1") == 1
    await pool.release(a, reuse=True)
    b = await asyncio.wait_for(second, 1)
    assert b is a and server.sessions == 1
    await pool.release(b, reuse=True)
    await asyncio.sleep(0.15)
    assert pool.open_sessions("127.0.0.1") == 1  # its share: kept for idle_seconds
    politeness.workers = 3
    c = await pool.acquire("mx", "127.0.0.1")
    await pool.release(c, reuse=True)
    await asyncio.sleep(0.15)
    assert pool.open_sessions("127.0.0.1") == 0 and server.open == 0  # not 5 s
    politeness.workers = 1
    d, e = await asyncio.gather(pool.acquire("mx", "127.0.0.1"),
                                pool.acquire("mx", "127.0.0.1"))
    assert pool.open_sessions("127.0.0.1") == 2
    politeness.workers = 2  # another worker came: of two, the first given back goes
    await pool.release(d, reuse=True)
    assert pool.open_sessions("127.0.0.1") == 1 and server.log.count("QUIT") == 2
    await pool.release(e, reuse=True)
    assert pool.open_sessions("127.0.0.1") == 1
    await pool.aclose()


@pytest.mark.asyncio
async def test_a_wait_for_a_slot_ends_when_the_share_shrinks_to_what_the_pool_holds(
        ) -> None:
    """A group waiting for a second slot (every one held) while another worker comes to
    have work for the host stops waiting for the slot that is the other worker's share:
    when that slot comes free, no second session is opened; the group takes this
    process's own session when it comes back."""
    server = FakeServer()
    conn = FakeConnector({"127.0.0.1": server})
    politeness = SharedPoliteness()
    politeness.workers = 1
    pool = MxPool(conn, politeness, PoolConfig(max_connections=2, idle_seconds=5.0))
    other = politeness.connection("127.0.0.1")  # another worker's slot
    await other.__aenter__()
    a = await pool.acquire("mx", "127.0.0.1")
    waiting = asyncio.ensure_future(pool.acquire("mx", "127.0.0.1"))
    await asyncio.sleep(0.05)
    politeness.workers = 2
    await asyncio.sleep(1.1)  # a waiter looks at its host again within a second
    await other.__aexit__(None, None, None)  # the other worker's slot comes free
    await asyncio.sleep(0.1)
    assert not waiting.done() and server.sessions == 1
    await pool.release(a, reuse=True)
    b = await asyncio.wait_for(waiting, 1)
    assert b is a and server.sessions == 1
    await pool.release(b, reuse=True)
    await pool.aclose()


@pytest.mark.asyncio
async def test_a_share_is_rounded_up_so_no_slot_stays_unused() -> None:
    """Three slots, two workers with work: two sessions each may be asked for (the
    shared limit holds the total at three)."""
    server = FakeServer()
    conn = FakeConnector({"127.0.0.1": server})
    politeness = SharedPoliteness()
    pool = MxPool(conn, politeness, PoolConfig(max_connections=3, idle_seconds=5.0))
    assert pool.share("127.0.0.1") == 2
    politeness.workers = 4
    assert pool.share("127.0.0.1") == 1
    await pool.aclose()
