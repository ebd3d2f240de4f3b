"""The Redis sinks (redis_dns_cache, redis_politeness, redis_jobs) against a real Redis
(the local stack's): DNS cache, global politeness across two "workers" (two clients, two
instances), and the job store, which must behave exactly like
sinks.memory_jobs.MemoryJobStore.

Every test uses its own key prefix, so parallel runs never collide; keys are deleted
afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio

from agents.jobstore import JobStore
from checks.dns import CachingResolver, DnsAnswer, NxDomain
from checks.politeness import HostLimits, RcptPacing
from mailsift.settings import Settings
from sinks.memory_jobs import MemoryJobStore
from sinks.redis_client import RedisRefused, redis_client
from sinks.redis_dns_cache import RedisDnsCache
from sinks.redis_jobs import RedisJobStore, nothing_to_rebuild
from sinks.redis_politeness import RESERVE_LEAD, RcptReservation, RedisPoliteness
from tests.politeness_contract import check_give_back

pytestmark = [pytest.mark.stack, pytest.mark.asyncio]

MX = "127.0.9.9"

ClientFactory = Callable[[], redis.asyncio.Redis]


@pytest.fixture
def prefix() -> str:
    return f"mailsift-test:{uuid.uuid4().hex}:"


@pytest_asyncio.fixture
async def clients(stack: Settings, prefix: str) -> AsyncIterator[ClientFactory]:
    """Make clients of the stack's Redis (one per simulated worker); clean up after."""
    made: list[redis.asyncio.Redis] = []

    def make() -> redis.asyncio.Redis:
        client = redis_client(stack.redis_url)
        made.append(client)
        return client

    # a settled Redis: these tests start with no lease held anywhere (the loss of held
    # leases has its own test), so new leases need not wait for re-registrations
    setup = redis_client(stack.redis_url)
    await setup.set(f"{prefix}mx:leases-settled", "0")
    await setup.aclose()
    yield make
    cleaner = redis_client(stack.redis_url)
    try:
        keys = [k async for k in cleaner.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await cleaner.delete(*keys)
    finally:
        await cleaner.aclose()
        for client in made:
            await client.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# =========================================================================== DNS cache


class CountingResolver:
    """Answers from a dict and counts the questions that reach it."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.calls[(name, rdtype)] += 1
        if name.startswith("nx."):
            raise NxDomain(f"{name} {rdtype}: no such domain (NXDOMAIN)", ttl=1)
        return DnsAnswer(("10 mx.example.test.",), 1)


async def test_dns_cache_set_get_expiry_delete(clients: ClientFactory, prefix: str) -> None:
    client = clients()
    cache = RedisDnsCache(client, prefix=prefix)
    assert await cache.get("dns:a.test/MX") is None
    await cache.set("dns:a.test/MX", b"\x00value\xff", ttl=0.3)
    assert await cache.get("dns:a.test/MX") == b"\x00value\xff"
    # stored under the prefix, with a millisecond TTL
    assert await client.get(prefix + "dns:a.test/MX") == b"\x00value\xff"
    assert 0 < await client.pttl(prefix + "dns:a.test/MX") <= 300
    await asyncio.sleep(0.4)
    assert await cache.get("dns:a.test/MX") is None

    await cache.set("dns:b.test/MX", b"b", ttl=60)
    assert await cache.get("dns:b.test/MX") == b"b"
    await cache.set("dns:b.test/MX", b"b", ttl=0)  # ttl <= 0 deletes
    assert await cache.get("dns:b.test/MX") is None


async def test_dns_cache_calls_of_one_loop_turn_share_one_round_trip(
        clients: ClientFactory, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A domain's lookups start together: their gets are one MGET, their sets one
    pipeline, and each caller still gets its own answer."""
    client = clients()
    cache = RedisDnsCache(client, prefix=prefix)
    calls: Counter[str] = Counter()
    real_mget, real_pipeline = client.mget, client.pipeline

    def mget(*args: Any, **kwargs: Any) -> Any:
        calls["mget"] += 1
        return real_mget(*args, **kwargs)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        calls["pipeline"] += 1
        return real_pipeline(*args, **kwargs)

    monkeypatch.setattr(client, "mget", mget)
    monkeypatch.setattr(client, "pipeline", pipeline)
    keys = [f"dns:d{i}.test/MX" for i in range(6)]
    await asyncio.gather(*(cache.set(k, k.encode(), ttl=60) for k in keys[:5]),
                         cache.set(keys[5], b"", ttl=0))
    assert calls == {"pipeline": 1}
    got = await asyncio.gather(*(cache.get(k) for k in keys), cache.get(keys[0]))
    assert got == [k.encode() for k in keys[:5]] + [None, keys[0].encode()]
    assert calls == {"pipeline": 1, "mget": 1}
    # a caller that gives up takes nobody's answer with it
    waiting = asyncio.ensure_future(cache.get(keys[1]))
    other = asyncio.ensure_future(cache.get(keys[2]))
    await asyncio.sleep(0)
    waiting.cancel()
    assert await other == keys[2].encode()


async def test_caching_resolver_over_redis_shared_by_two_workers(
    clients: ClientFactory, prefix: str
) -> None:
    base1, base2 = CountingResolver(), CountingResolver()
    worker1 = CachingResolver(base1, RedisDnsCache(clients(), prefix=prefix),
                              min_ttl=0, max_ttl=0.3, negative_ttl=0.3)
    worker2 = CachingResolver(base2, RedisDnsCache(clients(), prefix=prefix),
                              min_ttl=0, max_ttl=0.3, negative_ttl=0.3)

    first = await worker1.query("example.test.", "MX")
    assert first.records == ("10 mx.example.test.",)
    assert base1.calls[("example.test.", "MX")] == 1

    again = await worker1.query("example.test.", "MX")  # served from Redis
    assert again.records == first.records
    assert base1.calls[("example.test.", "MX")] == 1
    assert worker1.hits == 1

    other = await worker2.query("EXAMPLE.test", "mx")  # the other worker shares the hit
    assert other.records == first.records
    assert sum(base2.calls.values()) == 0
    assert worker2.hits == 1

    # negative answers are shared too
    with pytest.raises(NxDomain):
        await worker1.query("nx.example.test.", "A")
    with pytest.raises(NxDomain):
        await worker2.query("nx.example.test.", "A")
    assert base1.calls[("nx.example.test.", "A")] == 1
    assert sum(base2.calls.values()) == 0

    await asyncio.sleep(0.4)  # past the 0.3 s cache TTL
    await worker2.query("example.test.", "MX")
    assert base2.calls[("example.test.", "MX")] == 1
    await worker1.query("example.test.", "MX")  # worker2 refilled the shared entry
    assert base1.calls[("example.test.", "MX")] == 1


async def test_dns_cache_survives_unreachable_redis() -> None:
    client = redis_client(f"redis://127.0.0.1:{_free_port()}/0")
    try:
        cache = RedisDnsCache(client, prefix="mailsift-test:down:")
        base = CountingResolver()
        resolver = CachingResolver(base, cache, min_ttl=0, max_ttl=60)
        started = time.monotonic()
        assert await cache.get("dns:x.test/MX") is None
        await cache.set("dns:x.test/MX", b"v", ttl=10)  # swallowed
        answer = await resolver.query("x.test.", "MX")  # the resolver keeps working
        assert answer.records == ("10 mx.example.test.",)
        await resolver.query("x.test.", "MX")  # from the in-process cache
        assert base.calls[("x.test.", "MX")] == 1
        assert time.monotonic() - started < 3.0
    finally:
        await client.aclose()


# =========================================================================== politeness


async def test_connection_slots_are_global_across_workers(
    clients: ClientFactory, prefix: str
) -> None:
    workers = [
        RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100, prefix=prefix)
        for _ in range(2)
    ]
    held = 0
    peak = 0

    async def session(p: RedisPoliteness) -> None:
        nonlocal held, peak
        async with p.connection(MX):
            held += 1
            peak = max(peak, held)
            await asyncio.sleep(0.1)
            held -= 1

    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(session(workers[i % 2]) for i in range(10))), timeout=20
    )
    elapsed = time.monotonic() - started
    assert peak == 2
    assert elapsed >= 0.5 - 0.02  # 10 sessions of 0.1 s through 2 slots
    assert await workers[0].active(MX) == 0
    assert await workers[0].redis.zcard(workers[0].conn_key(MX)) == 0


async def test_other_mx_hosts_have_their_own_slots(
    clients: ClientFactory, prefix: str
) -> None:
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=100, prefix=prefix)
    async with p.connection("127.0.9.1"):
        async with asyncio.timeout(2):
            async with p.connection("127.0.9.2"):
                assert await p.active("127.0.9.1") == 1
                assert await p.active("127.0.9.2") == 1


async def test_a_host_with_limits_of_its_own(clients: ClientFactory, prefix: str) -> None:
    """A host given its own limits (a provider's, MAILSIFT_PROVIDER_LIMITS) gets them
    from Redis too: its slot count and its RCPT spacing; the others keep the default."""
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=10, prefix=prefix)
    p.limits.set("127.0.9.3", HostLimits.of(2, 100))
    async with asyncio.timeout(2):
        async with p.connection("127.0.9.3"), p.connection("127.0.9.3"):
            assert await p.active("127.0.9.3") == 2
    with pytest.raises(TimeoutError):
        async with p.connection("127.0.9.4"):
            await asyncio.wait_for(p.connection("127.0.9.4").__aenter__(), 0.3)
    own, default = await asyncio.gather(p.reserve_rcpts("127.0.9.3", 3),
                                        p.reserve_rcpts("127.0.9.4", 3))  # one script
    # 100/s against 10/s: ~0.02 s against ~0.2 s
    assert own.due[-1] - own.due[0] < 0.05 < default.due[-1] - default.due[0]
    assert p.rcpt_interval("127.0.9.3") < p.rcpt_interval("127.0.9.4")


async def test_permits_given_back_return_to_the_grid_while_nobody_reserved_after(
    clients: ClientFactory, prefix: str
) -> None:
    """The same as in-process: the RCPT script does what RcptPacing.take does, also when
    the reservation after the late permit is another worker's."""
    p = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=5, prefix=prefix)
    await check_give_back(p, "127.0.9.5", "127.0.9.6", "127.0.9.7", "127.0.9.8",
                          lead=RESERVE_LEAD)
    other = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=5, prefix=prefix)
    interval = p.rcpt_interval(MX)
    mine = await p.reserve_rcpts(MX, 1)
    theirs = await other.reserve_rcpts(MX, 1)
    await asyncio.sleep(0.05)
    instead = await p.reserve_rcpts(MX, 1, unused=mine.unused(0))
    shift = instead.due[0] - mine.due[0]
    assert 0.05 < shift < 0.05 + RESERVE_LEAD + 0.03
    their_next = await other.reserve_rcpts(MX, 1)
    assert abs(their_next.due[0] - (theirs.due[0] + interval + shift)) < 0.003
    # and a permit reserved with nothing before it starts RESERVE_LEAD from now
    started = time.monotonic()
    fresh = await p.reserve_rcpts("127.0.9.4", 1)
    assert RESERVE_LEAD - 0.003 < fresh.due[0] - started


async def test_a_permit_given_back_after_its_grid_expired_starts_the_grid_afresh(
    clients: ClientFactory, prefix: str
) -> None:
    """A host's grid key expires a second after its last permit. A permit given back
    later (its session stalled that long) must not move the forgotten grid: the next
    permit comes an interval after the new one, not beside it."""
    p = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=5, prefix=prefix)
    interval = p.rcpt_interval(MX)
    stalled = await p.reserve_rcpts(MX, 1)
    await asyncio.sleep(interval + 1.1)  # the key is gone now
    assert await p.redis.exists(p.rcpt_key(MX)) == 0
    instead = await p.reserve_rcpts(MX, 1, unused=stalled.unused(0))
    following = await p.reserve_rcpts(MX, 1)
    assert abs(following.due[0] - (instead.due[0] + interval)) < 0.003


async def test_lease_of_crashed_holder_expires(clients: ClientFactory, prefix: str) -> None:
    crashed = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100,
                              lease_seconds=0.5, prefix=prefix)
    other = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100,
                            prefix=prefix)
    async with other.connection(MX):  # a live holder keeps the key alive meanwhile
        lease = crashed.connection(MX)
        started = time.monotonic()
        await lease.__aenter__()  # ... and this holder "crashes": never released
        lease._renewal.cancel()  # type: ignore[union-attr]  # a dead process renews nothing
        assert await other.active(MX) == 2
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.connection(MX).__aenter__(), 0.25)
        # the cancelled wait left nothing behind: only the two leases are there
        assert await other.redis.zcard(other.conn_key(MX)) == 2

        async with asyncio.timeout(3):
            async with other.connection(MX):
                waited = time.monotonic() - started
                assert 0.5 - 0.02 <= waited < 1.0  # right after the lease expired
                assert await other.active(MX) == 2
                assert await other.redis.zcard(other.conn_key(MX)) == 2  # it was dropped
    assert await other.active(MX) == 0
    assert await other.redis.zcard(other.conn_key(MX)) == 0


async def test_workers_learn_how_many_have_work_for_a_host(
        clients: ClientFactory, prefix: str) -> None:
    """One worker holds both slots of a host; another asks for one and finds none. Both
    count as sharers of the host from then on: the holder hears it at its next renewal,
    the other at once. Giving up the wait, or giving back its last slot of the host,
    takes a worker off at once; one that died drops off by itself."""
    one = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100,
                          renew_seconds=0.1, prefix=prefix)
    two = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100,
                          renew_seconds=0.1, prefix=prefix)
    first, second = one.connection(MX), one.connection(MX)
    async with first:
        async with second:
            await asyncio.sleep(0.25)
            assert one.sharers(MX) == 1 and two.sharers(MX) == 1
            waiting = asyncio.ensure_future(two.connection(MX).__aenter__())
            await asyncio.sleep(0.1)
            assert two.sharers(MX) == 2
            await asyncio.sleep(0.15)
            assert one.sharers(MX) == 2
            waiting.cancel()  # it gave up: off at once, not when its entry expires
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert two.sharers(MX) == 1
            await asyncio.sleep(0.15)
            assert one.sharers(MX) == 1
            # a worker that died while it waited: forgotten three renewal periods on
            seconds, micros = await one.redis.time()
            await one.redis.zadd(one.sharers_key(MX),
                                 {"dead": seconds * 1000 + micros // 1000 + 300})
            await asyncio.sleep(0.15)
            assert one.sharers(MX) == 2
            await asyncio.sleep(0.35)
            assert one.sharers(MX) == 1
        async with asyncio.timeout(2):
            async with two.connection(MX):
                assert two.sharers(MX) == 2
                await asyncio.sleep(0.25)
                assert one.sharers(MX) == 2
            await asyncio.sleep(0.15)  # two gave back its last slot: at once, not in 0.3 s
            assert one.sharers(MX) == 1
    assert await one.redis.zrange(one.sharers_key(MX), 0, -1) == []
    assert one.sharers(MX) == 1  # not known any more: it holds no slot of the host


async def test_leases_redis_lost_are_put_back_before_any_new_one(
        clients: ClientFactory, prefix: str) -> None:
    """Two workers hold both slots of a host; Redis loses everything. No new lease is given
    until the held ones had time to register again, and then the host is full."""
    one = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100,
                          renew_seconds=0.2, prefix=prefix)
    two = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100,
                          renew_seconds=0.2, prefix=prefix)
    raw = clients()
    held_one, held_two = one.connection(MX), two.connection(MX)
    async with held_one, held_two:
        await raw.delete(*await raw.keys(prefix + "*"))  # a restart without persistence
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(one.connection(MX).__aenter__(), 2.0)
        assert time.monotonic() - started >= 1.9
        assert await raw.zcard(one.conn_key(MX)) == 2  # both held leases are back
        assert not held_one.lost and not held_two.lost
    assert await raw.zcard(one.conn_key(MX)) == 0


async def test_a_lease_not_renewed_in_time_drops_its_session_before_redis_drops_it(
        clients: ClientFactory, prefix: str) -> None:
    """A worker cut off from a Redis the others still reach (its renewals hang): the
    session is dropped before Redis expires the lease, so the worker that gets the slot
    next never finds it still open."""
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=100,
                        lease_seconds=1.5, renew_seconds=0.2, prefix=prefix)
    other = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=100,
                            prefix=prefix)
    dropped: list[float] = []
    lease = p.connection(MX)
    async with lease:
        lease.watch(lambda: dropped.append(time.monotonic()))
        await asyncio.sleep(0.5)  # renewed a few times: it holds
        assert not dropped and not lease.lost
        renewed = time.monotonic()
        real_script = p._renew_script

        async def hang(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(3600)

        p._renew_script = hang  # type: ignore[assignment]  # packets go nowhere now
        async with asyncio.timeout(3):
            async with other.connection(MX):  # the slot, once Redis drops the lease
                taken = time.monotonic()
        p._renew_script = real_script
        assert lease.lost and len(dropped) == 1
        # given up at least one margin (0.5 s = a third of the lease) before Redis would
        # drop it, and never before it had to be
        assert renewed - 0.25 < dropped[0] < renewed + 1.5 - 0.2
        assert dropped[0] < taken - 0.3
    assert await other.redis.zcard(other.conn_key(MX)) == 0


async def test_a_reply_redis_gives_every_time_fails_at_once_with_one_clear_error(
        clients: ClientFactory, prefix: str) -> None:
    """A script Redis refuses (here: a key of the wrong type, as another program sharing
    the prefix could leave) fails the same way every time: taken for an outage and
    waited out, the host's probes waited for good. It is raised, naming the host; a
    renewal Redis refuses drops the lease's session."""
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=5,
                        lease_seconds=1.5, renew_seconds=0.2, prefix=prefix)
    await p.redis.rpush(p.rcpt_key(MX), "not a grid")
    with pytest.raises(RedisRefused, match=f"for RCPT rate of {MX}: .*WRONGTYPE"):
        await asyncio.wait_for(p.reserve_rcpts(MX, 1), 5)
    dropped: list[float] = []
    lease = p.connection(MX)
    async with lease:
        lease.watch(lambda: dropped.append(time.monotonic()))
        await p.redis.delete(p.conn_key(MX))
        await p.redis.set(p.conn_key(MX), "not a lease set")
        # renewed every 0.2 s: dropped at the first refusal, not a second on, when a
        # renewal waited out would give up on the lease as stale
        async with asyncio.timeout(0.6):
            while not dropped:
                await asyncio.sleep(0.05)
        assert lease.lost
    with pytest.raises(RedisRefused, match=f"for connection slot of {MX}: .*WRONGTYPE"):
        async with asyncio.timeout(5):
            async with p.connection(MX):
                pass


async def test_idle_lease_key_expires(clients: ClientFactory, prefix: str) -> None:
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=100,
                        lease_seconds=0.3, prefix=prefix)
    lease = p.connection(MX)
    await lease.__aenter__()  # never released
    lease._renewal.cancel()  # type: ignore[union-attr]  # its process died: no renewal
    assert 0 < await p.redis.pttl(p.conn_key(MX)) <= 300
    await asyncio.sleep(0.4)
    assert await p.redis.exists(p.conn_key(MX)) == 0


async def test_cancellation_at_any_point_leaks_no_lease(
    clients: ClientFactory, prefix: str
) -> None:
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=100, prefix=prefix)

    async def session() -> None:
        async with p.connection(MX):
            await asyncio.sleep(5)

    for i in range(40):
        task = asyncio.create_task(session())
        await asyncio.sleep(i * 0.00005)  # cancel before, during and after the acquire
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)  # a shielded release may still be on its way
        assert await p.redis.zcard(p.conn_key(MX)) == 0, f"leaked at step {i}"


async def test_cancellation_releases_the_slot(clients: ClientFactory, prefix: str) -> None:
    p = RedisPoliteness(clients(), max_connections=1, rcpt_per_second=100, prefix=prefix)
    key = p.conn_key(MX)
    entered = asyncio.Event()

    async def holder() -> None:
        async with p.connection(MX):
            entered.set()
            await asyncio.sleep(30)

    async def waiter() -> None:
        async with p.connection(MX):
            raise AssertionError("the slot is held: the waiter must not get it")

    hold = asyncio.create_task(holder())
    await asyncio.wait_for(entered.wait(), 5)
    assert await p.redis.zcard(key) == 1

    wait = asyncio.create_task(waiter())
    await asyncio.sleep(0.3)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    assert await p.redis.zcard(key) == 1  # the waiter leaked no lease

    hold.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hold
    assert await p.redis.zcard(key) == 0
    async with asyncio.timeout(1):  # and the slot is free at once
        async with p.connection(MX):
            pass


class RecordingPoliteness(RedisPoliteness):
    """Remembers the Redis-time slot granted to each task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.granted: dict[asyncio.Task[Any], RcptReservation] = {}

    async def reserve_rcpt(self, mx_ip: str) -> RcptReservation:
        reservation = await super().reserve_rcpt(mx_ip)
        task = asyncio.current_task()
        assert task is not None
        self.granted[task] = reservation
        return reservation


async def test_rcpt_rate_is_global_across_workers(
    clients: ClientFactory, prefix: str
) -> None:
    workers = [
        RecordingPoliteness(clients(), max_connections=2, rcpt_per_second=20, prefix=prefix)
        for _ in range(2)
    ]
    done: list[tuple[float, float]] = []  # (granted slot in Redis time, returned at)

    async def rcpt(p: RecordingPoliteness) -> None:
        await p.before_rcpt(MX)
        returned = time.time()  # same host: Redis TIME is this wall clock
        task = asyncio.current_task()
        assert task is not None
        done.append((p.granted[task].slot, returned))

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(rcpt(workers[i % 2]) for i in range(30))), 20)
    elapsed = time.monotonic() - started
    assert len(done) == 30
    assert elapsed >= 1.4  # 29 intervals of 52.5 ms

    # the slots, in Redis time, are at least one interval apart ...
    slots = sorted(round(slot * 1_000_000) for slot, _ in done)
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= round(1_000_000 * RcptPacing.for_rate(20).interval) >= 50_000
    # ... so no rolling second [t, t + 1 s) holds more than 20 of them
    window = max(
        sum(1 for s in slots if start <= s < start + 1_000_000) for start in slots
    )
    assert window <= 20
    # and no caller went before its slot (2 ms for clock reads and loop granularity)
    assert all(returned >= slot - 0.002 for slot, returned in done)
    # the two workers really shared the spacing
    assert all(len(p.granted) == 15 for p in workers)


async def test_permits_asked_together_cost_one_script(
    clients: ClientFactory, prefix: str
) -> None:
    p = RedisPoliteness(clients(), max_connections=2, rcpt_per_second=100, prefix=prefix)
    calls: list[int] = []
    script = p._rcpt_script

    async def counted(*, keys: list[str], args: list[Any]) -> Any:
        calls.append(len(keys))
        return await script(keys=keys, args=args)

    p._rcpt_script = counted  # type: ignore[assignment]
    hosts = [f"127.0.3.{i}" for i in range(1, 6)]
    asked = time.monotonic()
    permits = await asyncio.gather(*(p.reserve_rcpts(h, 3) for h in [*hosts, hosts[0]]))
    answered = time.monotonic()
    assert calls == [6]  # six sessions, five hosts, one round trip
    interval = RcptPacing.for_rate(100).interval
    # each host's first permit is due at once (when the answer was read); the round trip
    # is how much earlier its place on the grid may be
    firsts = [permit.due[0] for permit in permits[:5]]
    assert asked <= min(firsts) and max(firsts) <= answered
    assert all(0 < permit.unsure <= answered - asked for permit in permits)
    # the host asked twice got its second group after its first
    assert permits[5].due[0] - permits[0].due[0] >= 3 * interval - 0.001


async def test_politeness_waits_while_redis_is_unreachable() -> None:
    client = redis_client(f"redis://127.0.0.1:{_free_port()}/0")
    try:
        p = RedisPoliteness(client, max_connections=1, rcpt_per_second=100,
                            prefix="mailsift-test:down:")
        # never raises, never lets anything through: it keeps waiting
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(p.before_rcpt(MX), 1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(p.connection(MX).__aenter__(), 1.0)
    finally:
        await client.aclose()


# =========================================================================== job store


@pytest_asyncio.fixture(params=["memory", "redis"])
async def jobstore(
    request: pytest.FixtureRequest, clients: ClientFactory, prefix: str
) -> JobStore:
    if request.param == "memory":
        return MemoryJobStore()
    store: JobStore = RedisJobStore(clients(), prefix=prefix, ttl_seconds=600,
                                    rebuild=nothing_to_rebuild)
    return store


async def test_jobstore_semantics(jobstore: JobStore) -> None:
    job, other_job = "job-1", "job-1@replay-7"

    # claim: the first submission of a dedupe key wins, idempotently
    assert await jobstore.claim(job, "a@x.test", "submit:0:10") is True
    assert await jobstore.claim(job, "a@x.test", "submit:0:10") is True  # redelivery
    assert await jobstore.claim(job, "a@x.test", "submit:1:3") is False  # a duplicate
    assert await jobstore.claim(job, "b@x.test", "submit:1:3") is True
    assert await jobstore.claim(other_job, "a@x.test", "submit:1:3") is True  # own run

    progress = await jobstore.progress(job)
    assert progress.total is None and progress.done == 0 and not progress.is_complete
    assert progress.by_verdict == {} and progress.completed is False

    # duplicates count once per source
    await jobstore.record_duplicates(job, ["submit:1:3"])
    await jobstore.record_duplicates(job, ["submit:1:3", "submit:2:8"])
    await jobstore.set_total(job, 5)
    progress = await jobstore.progress(job)
    assert (progress.total, progress.final, progress.duplicates) == (5, 0, 2)

    # finals count once per dedupe key, by verdict
    assert await jobstore.record_final(job, "a@x.test", "deliverable") is True
    assert await jobstore.record_final(job, "a@x.test", "deliverable") is False
    assert await jobstore.record_final(job, "a@x.test", "undeliverable") is False
    assert await jobstore.record_final(job, "b@x.test", "undeliverable") is True
    progress = await jobstore.progress(job)
    assert progress.final == 2
    assert progress.by_verdict == {"deliverable": 1, "undeliverable": 1}
    assert progress.done == 4 and not progress.is_complete

    assert await jobstore.record_final(job, "c@x.test", "deliverable") is True
    progress = await jobstore.progress(job)
    assert progress.by_verdict == {"deliverable": 2, "undeliverable": 1}
    assert progress.done == 5 and progress.is_complete and not progress.completed

    # set_total replaces; completion is announced exactly once
    await jobstore.set_total(job, 6)
    assert not (await jobstore.progress(job)).is_complete
    await jobstore.set_total(job, 5)
    assert await jobstore.mark_completed(job) is True
    assert await jobstore.mark_completed(job) is False
    assert (await jobstore.progress(job)).completed is True

    # the replay run is tracked on its own
    other = await jobstore.progress(other_job)
    assert (other.total, other.final, other.duplicates, other.completed) == (
        None, 0, 0, False)
    assert await jobstore.mark_completed(other_job) is True


async def test_a_second_submission_verified_on_its_own_counts_as_a_duplicate(
        jobstore: JobStore) -> None:
    """After a lost claim, two submissions of one address can both be verified: the one
    the claim does not name counts as a duplicate (once), so the job still completes."""
    job = "job-lost-claim"
    await jobstore.set_total(job, 2)
    assert await jobstore.claim(job, "a@x.test", "submit:0:1") is True
    assert await jobstore.record_final(job, "a@x.test", "deliverable", "submit:0:2") is False
    assert await jobstore.record_final(job, "a@x.test", "deliverable", "submit:0:1") is True
    again = await jobstore.record_finals(job, [("a@x.test", "deliverable", "submit:0:2")])
    assert (again.final, again.duplicates, again.is_complete) == (1, 1, True)
    assert again.by_verdict == {"deliverable": 1}
    # a claim that is missing is taken by the first final verdict naming its source
    other = "job-lost-claim-2"
    assert await jobstore.record_final(other, "b@x.test", "undeliverable", "submit:0:3")
    assert await jobstore.claim(other, "b@x.test", "submit:0:3") is True
    assert await jobstore.claim(other, "b@x.test", "submit:0:4") is False


async def test_a_lost_job_state_is_rebuilt_once_while_the_callers_wait(
        clients: ClientFactory, prefix: str) -> None:
    calls: list[str] = []

    async def rebuild(store: RedisJobStore) -> None:
        calls.append("rebuild")
        await asyncio.sleep(0.3)  # the other callers wait meanwhile
        await store.restore("job-r", total=3, duplicates=["s:0:9"])
        await store.restore_finals("job-r", [("a@x.test", "deliverable", "s:0:1")])

    one = RedisJobStore(clients(), prefix=prefix, rebuild=rebuild)
    two = RedisJobStore(clients(), prefix=prefix, rebuild=rebuild)
    # no marker yet (a new Redis): the first operations rebuild, exactly once
    first, second, claimed = await asyncio.gather(
        one.progress("job-r"), two.progress("job-r"), two.claim("job-r", "b@x.test", "s:0:2"))
    assert calls == ["rebuild"]
    assert (first.total, first.final, first.duplicates) == (3, 1, 1) and second == first
    assert claimed is True
    assert await one.claim("job-r", "a@x.test", "s:0:7") is False  # the claim came back

    # Redis loses everything (a restart without persistence): rebuilt on the next call
    client = clients()
    await client.delete(*await client.keys(prefix + "*"))
    assert (await two.record_finals("job-r", [("b@x.test", "undeliverable", "s:0:2")])
            ).is_complete
    assert calls == ["rebuild", "rebuild"]


async def test_redis_jobstore_is_shared_and_keeps_a_ttl(
    clients: ClientFactory, prefix: str
) -> None:
    one = RedisJobStore(clients(), prefix=prefix, ttl_seconds=600, rebuild=nothing_to_rebuild)
    two = RedisJobStore(clients(), prefix=prefix, ttl_seconds=600)  # waits for one's rebuild
    job = "job-shared"

    results = await asyncio.gather(
        *(s.claim(job, "a@x.test", f"submit:0:{i}") for i, s in enumerate([one, two] * 5))
    )
    assert results.count(True) == 1  # exactly one submission is first
    finals = await asyncio.gather(
        *(s.record_final(job, "a@x.test", "deliverable") for s in [one, two] * 5)
    )
    assert finals.count(True) == 1
    await two.set_total(job, 1)
    assert (await one.progress(job)).is_complete
    marks = await asyncio.gather(*(s.mark_completed(job) for s in [one, two] * 3))
    assert marks.count(True) == 1

    for key in one.keys(job):
        assert key.startswith(f"{prefix}job:{job}:")
    existing = [k for k in one.keys(job) if await one.redis.exists(k)]
    assert len(existing) == 5  # no duplicates recorded: no dups key
    for key in existing:
        assert 590_000 < await one.redis.pttl(key) <= 600_000
