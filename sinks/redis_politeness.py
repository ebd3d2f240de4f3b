"""Global per-MX politeness in Redis: a :class:`checks.politeness.Politeness` whose
connection slots and RCPT spacing hold across all workers. Time comes from Redis
(``TIME``), never from the local clocks. If Redis is unreachable it waits and retries; it
never skips a limit. A reply Redis gives every time (a script that fails, a key of the
wrong type) is raised as :class:`~sinks.redis_client.RedisRefused`, not waited for.

Key layout (``prefix`` defaults to ``"mailsift:"``)::

    {prefix}mx:{ip}:conn               zset    lease token -> lease expiry (ms, Redis time)
    {prefix}mx:{ip}:sharers            zset    worker id -> until when it has work for the host
    {prefix}mx:leases-settled          string  when held leases had time to re-register
    {prefix}mx:{ip}:rcpt               string  next free RCPT permit time (µs, Redis time)

Scripts touch several keys, so this expects a single Redis (not Redis Cluster).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple, TypeVar

import redis.asyncio

from agents.outage import Backoff
from checks.politeness import (
    GridSpan,
    HostLimits,
    HostLimitTable,
    RcptPacing,
    RcptPermits,
    SharedClock,
)
from sinks.redis_client import UNAVAILABLE as _UNAVAILABLE
from sinks.redis_client import RedisRefused as _RedisRefused
from sinks.redis_client import ThrottledWarning as _ThrottledWarning
from sinks.redis_client import as_int as _int
from sinks.redis_client import guarded as _guarded
from sinks.redis_client import refused as _refused

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["RESERVE_LEAD", "RcptReservation", "RedisPoliteness"]


# KEYS[1] = lease zset, KEYS[2] = the leases' marker, KEYS[3] = the host's sharers;
# ARGV = max, token, lease_ms, grace_ms, worker id, sharer_ms.
# Returns 1 (taken) or 0 (full), plus 10 times the workers with work for the host (this
# one counted for sharer_ms from now); or minus the ms to wait while the held leases
# re-register.
_ACQUIRE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local settled = tonumber(redis.call('GET', KEYS[2]) or '')
if not settled then
  -- no marker: a new Redis, or one that lost its leases. Every held lease re-registers
  -- at its next renewal; no new one is given before they all could.
  settled = now + tonumber(ARGV[4])
  redis.call('SET', KEYS[2], string.format('%.0f', settled))
end
if settled > now then return now - settled end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[5])
local latest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], string.format('%.0f', tonumber(latest[2])))
local sharers = 10 * redis.call('ZCARD', KEYS[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return sharers end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(last[2])))
return 1 + sharers
"""

# KEYS[1] = lease zset, KEYS[2] = the host's sharers; ARGV = token, lease_ms, max, worker
# id, sharer_ms. Extends a held lease (1); puts back one that vanished (Redis lost it)
# while there is room (2); 0 if it cannot be held. Plus 10 times the workers with work for
# the host (this one counted for sharer_ms from now).
_RENEW_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kept = 1
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
  kept = 2
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(last[2])))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], string.format('%.0f', tonumber(latest[2])))
return kept + 10 * redis.call('ZCARD', KEYS[2])
"""

# The permit grid of checks.politeness.RcptPacing, in Redis time (RcptPacing.take is the
# same on one clock). For each request the permits are start, start + interval, ... (the
# caller groups them with RcptPacing.slots); the next free one is start + count *
# interval, unless a permit given back moved the grid.
# KEYS = the next-free-permit key of each request (one MX may come twice);
# ARGV = five per request: the interval_us and the permit count (hosts may have limits of
# their own), the start and end of permits given back (0 0: none), and the lead_us (no
# permit starts sooner than now plus that). Returns now, then each start.
_RCPT_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {string.format('%.0f', now)}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[5 * i - 4])
  local count = tonumber(ARGV[5 * i - 3])
  local back_from = tonumber(ARGV[5 * i - 2])
  local back_end = tonumber(ARGV[5 * i - 1])
  local earliest = now + tonumber(ARGV[5 * i])
  local nxt = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local start, after
  local window = math.ceil(1000000 / interval) * interval
  if back_end > 0 and nxt > back_end and count == 1 and back_end - back_from == interval
      and nxt <= back_from + window then
    -- one late permit, some but fewer than a second of permits reserved after it: the
    -- new one takes its part, and the grid from the next free permit on moves by as much
    -- (a next free permit before it is a key that expired: the grid starts afresh)
    start = math.max(earliest, back_from)
    after = nxt + (start - back_from)
  else
    if back_end > 0 and nxt == back_end then nxt = back_from end  -- nobody after: back
    start = math.max(earliest, nxt)
    after = start + interval * count
  end
  local ttl_ms = math.max(1, math.ceil((after - now) / 1000) + 1000)
  redis.call('SET', KEYS[i], string.format('%.0f', after), 'PX', string.format('%.0f', ttl_ms))
  out[#out + 1] = string.format('%.0f', start)
end
return out
"""

#: at the rates where a late permit is not used (one RCPT per permit), no permit starts
#: sooner than this after the script ran: one due at once would often be late by the time
#: a busy event loop reads its answer
RESERVE_LEAD = 0.02


class RcptReservation(NamedTuple):
    """A granted RCPT slot: when it may go (Redis clock, epoch seconds) and how long
    the caller had to wait for it (seconds)."""

    slot: float
    wait: float


class _Granted(NamedTuple):
    """What one reservation was given: Redis time when it was made, the start of its
    first permit (µs) and the send time of each (Redis time, seconds), and when its
    script was sent (``time.monotonic()``)."""

    now: float
    start_us: int
    sent_at: float
    sends: list[float]


class _Asked(NamedTuple):
    """A reservation waiting for its script: the host's key, its grid, the permits given
    back (µs, 0 0 for none) and the future of its grant."""

    key: str
    interval_us: int
    permits: int
    back: tuple[int, int]
    lead_us: int
    future: asyncio.Future[_Granted]


class _Lease:
    """The async context manager of :meth:`RedisPoliteness.connection` (a
    :class:`~checks.politeness.WatchedLease`)."""

    def __init__(self, owner: RedisPoliteness, mx_ip: str) -> None:
        self._owner = owner
        self._mx_ip = mx_ip
        self._token: str | None = None

        self._renewal: asyncio.Task[None] | None = None
        #: the slot may be someone else's now: Redis lost the lease and had no room to
        #: put it back, or renewals failed until shortly before Redis would drop it
        self.lost = False
        self._on_lost: Callable[[], None] | None = None

    def watch(self, on_lost: Callable[[], None]) -> None:
        """Call ``on_lost`` once when the lease is lost (at once if it already is)."""
        self._on_lost = on_lost
        if self.lost:
            self._fire()

    def mark_lost(self) -> None:
        self.lost = True
        self._fire()

    def _fire(self) -> None:
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback()

    async def __aenter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("this connection lease is already held")
        self._token, valid_until = await self._owner._acquire(self._mx_ip)
        self._owner._held[self._mx_ip] += 1
        # pooled sessions live as long as their host has work: keep the lease alive
        self.lost = False
        self._renewal = asyncio.ensure_future(
            self._owner._renew(self._mx_ip, self._token, self, valid_until))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        renewal, self._renewal = self._renewal, None
        self._on_lost = None
        if renewal is not None:
            renewal.cancel()
        if token is not None:
            held = self._owner._held
            held[self._mx_ip] -= 1
            last = not held[self._mx_ip]
            if last:  # no longer a sharer of the host (until it asks again)
                del held[self._mx_ip]
                self._owner._sharers.pop(self._mx_ip, None)
            await self._owner._release(self._mx_ip, token, last=last)


class RedisPoliteness:
    """A :class:`checks.politeness.Politeness` shared by all workers through Redis.

    *Connection slots*: a sorted set per MX IP of lease tokens scored by their expiry
    (Redis ``TIME``). Taking a slot drops expired leases and adds one only while fewer
    than ``max_connections`` are held (one Lua script); otherwise the caller polls again
    after 20-100 ms. Leaving the ``connection`` block (normally, on error or on
    cancellation) removes the lease. A lease lasts ``lease_seconds`` unless renewed, so
    a crashed worker frees its slots by itself.

    A held lease is renewed every ``renew_seconds`` (1 s) while its ``async with`` block
    runs, so a pooled session may live longer than one lease. If Redis loses the leases (a
    restart without persistence: the ``mx:leases-settled`` marker is gone too), no new
    lease is given for twice that, while the held ones put themselves back: no host ever
    sees more than its limit from us.

    *Sharing a host*: a worker that asks for a slot of a host, or renews one, counts
    among the host's sharers (``mx:{ip}:sharers``, its id, for three renewal periods);
    giving back its last slot of the host takes it off. Each of those scripts answers how
    many workers share the host, and :meth:`sharers` says what this worker last heard, so
    its pool keeps to its share of the host's slots (:class:`checks.pool.MxPool`): the
    first worker to reach a host does not keep it from the others for as long as it has
    work, and two workers that both have work keep one session each rather than hand the
    slots to and fro.

    *RCPT rate*: the evenly spaced permits of :class:`checks.politeness.RcptPacing` per
    MX IP, in Redis time, shared by all workers: a "next free permit" time that each
    reservation moves ``count`` intervals on. :meth:`reserve_rcpts` takes many permits in
    one round trip.

    When Redis does not answer, both wait and retry with backoff (warning at most once a
    minute): the limits are never bypassed.
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        max_connections: int,
        rcpt_per_second: float,
        lease_seconds: float = 180.0,
        renew_seconds: float = 1.0,
        prefix: str = "mailsift:",
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not rcpt_per_second > 0 or math.isinf(rcpt_per_second):
            raise ValueError("rcpt_per_second must be a positive number")
        if not lease_seconds > 0:
            raise ValueError("lease_seconds must be positive")
        self.redis = redis
        #: the default limits, and the hosts with their own (set by the engine)
        self.limits = HostLimitTable(HostLimits.of(max_connections, rcpt_per_second))
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self._lease_ms = max(1, math.ceil(lease_seconds * 1000))
        #: a held lease is renewed this often, which is also how soon one that Redis lost
        #: is put back; new leases wait twice that (plus slack) after a loss
        self.renew_seconds = min(renew_seconds, lease_seconds / 3)
        self._grace_ms = math.ceil(2000 * self.renew_seconds) + 500
        #: a lease not renewed until this long before it would expire is given up
        self._lost_margin = min(1.0, self.lease_seconds / 3)
        self.leases_key = f"{prefix}mx:leases-settled"
        #: this worker, among the hosts' sharers
        self.worker_id = uuid.uuid4().hex
        #: a sharer outlives a renewal that comes late (a busy loop) twice over
        self._sharer_ms = math.ceil(3000 * self.renew_seconds)
        #: leases this worker holds, per host
        self._held: defaultdict[str, int] = defaultdict(int)
        #: the workers with work for a host, as this one last heard (hosts it asked for)
        self._sharers: dict[str, int] = {}
        self._acquire_script = redis.register_script(_ACQUIRE_LUA)
        self._rcpt_script = redis.register_script(_RCPT_LUA)
        self._renew_script = redis.register_script(_RENEW_LUA)
        self._warn = _ThrottledWarning(log)
        #: Redis's clock on this process's ``time.monotonic()``
        self._clock = SharedClock()
        self._background: set[asyncio.Task[None]] = set()
        #: reservations asked for within the same millisecond, made in one script
        self._asked: list[_Asked] = []
        #: poll delay bounds while all slots are held (seconds)
        self.poll_min = 0.02
        self.poll_max = 0.1
        #: backoff bounds while Redis is unavailable (seconds)
        self.retry_min = 0.1
        self.retry_max = 5.0

    def conn_key(self, mx_ip: str) -> str:
        """The sorted set of connection leases of ``mx_ip``."""
        return f"{self.prefix}mx:{mx_ip}:conn"

    def sharers_key(self, mx_ip: str) -> str:
        """The workers with work for ``mx_ip`` lately (the ones asking for or holding a
        slot of it)."""
        return f"{self.prefix}mx:{mx_ip}:sharers"

    def sharers(self, mx_ip: str) -> int:
        """How many workers have work for ``mx_ip``, this one included, as of this
        worker's last request for a slot of it or renewal of one (1 when not known)."""
        return self._sharers.get(mx_ip, 1)

    def rcpt_key(self, mx_ip: str) -> str:
        """The next-free-RCPT-permit key of ``mx_ip``."""
        return f"{self.prefix}mx:{mx_ip}:rcpt"

    def _pacing(self, mx_ip: str) -> RcptPacing:
        pacing = self.limits.get(mx_ip).pacing
        if pacing is None:
            raise ValueError(f"{mx_ip}: RedisPoliteness needs a positive RCPT rate")
        return pacing

    @staticmethod
    def _interval_us(pacing: RcptPacing) -> int:
        # ceil: rounding the spacing down could let one RCPT too many into a second
        return math.ceil(1_000_000 * pacing.interval)

    def rcpt_group_size(self, mx_ip: str) -> int:
        """How many permits one pipelined group to ``mx_ip`` can get."""
        return self._pacing(mx_ip).group_size

    def rcpt_interval(self, mx_ip: str) -> float:
        """Seconds between two permits of ``mx_ip``, as the Lua script spaces them."""
        return self._interval_us(self._pacing(mx_ip)) / 1_000_000

    def connection(self, mx_ip: str) -> _Lease:
        """Hold one of ``mx_ip``'s global connection slots for the ``async with`` block."""
        return _Lease(self, mx_ip)

    async def active(self, mx_ip: str) -> int:
        """Unexpired leases of ``mx_ip`` held by all workers (for monitoring and tests)."""
        now_s, now_us = await _guarded(self.redis.time())
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        count = self.redis.zcount(self.conn_key(mx_ip), f"({now_ms}", "+inf")
        return int(await _guarded(count))

    async def before_rcpt(self, mx_ip: str) -> None:
        """Wait until one more RCPT TO may be sent to ``mx_ip`` (globally)."""
        reservation = await self.reserve_rcpt(mx_ip)
        if reservation.wait > 0:
            await asyncio.sleep(reservation.wait)

    async def reserve_rcpt(self, mx_ip: str) -> RcptReservation:
        """Take the next RCPT permit of ``mx_ip`` without sleeping; see :meth:`before_rcpt`."""
        granted = await self._reserve(mx_ip, 1)
        return RcptReservation(granted.sends[0], granted.sends[0] - granted.now)

    async def reserve_rcpts(self, mx_ip: str, count: int, *,
                            unused: GridSpan | None = None) -> RcptPermits:
        """Reserve ``count`` permits of ``mx_ip`` in one round trip (after giving back
        ``unused``, see :meth:`checks.politeness.Politeness.reserve_rcpts`).

        Their places on the grid are in Redis time; :class:`SharedClock` says where that
        falls on this process's clock, as precisely as the quickest recent round trip: a
        permit is due at the latest moment its place can be (never early), and
        ``unsure`` is how much earlier it may be. So an answer read late (a busy event
        loop, a connection waited for) does not make a permit look late that is not.
        """
        if count <= 0:
            return RcptPermits(())
        back = (0, 0) if unused is None else (round(unused.start), round(unused.end))
        granted = await self._reserve(mx_ip, count, back)
        lo, hi = self._clock.observe(granted.now, sent=granted.sent_at,
                                     answered=time.monotonic())
        return RcptPermits(tuple(s - lo for s in granted.sends), unsure=hi - lo,
                           first=granted.start_us,
                           interval=self._interval_us(self._pacing(mx_ip)))

    async def _reserve(self, mx_ip: str, count: int,
                       back: tuple[int, int] = (0, 0)) -> _Granted:
        backoff = self._backoff()
        while True:
            try:
                pacing = self._pacing(mx_ip)
                interval_us = self._interval_us(pacing)
                lead_us = 0 if pacing.horizon else round(RESERVE_LEAD * 1_000_000)
                granted = await self._ask(self.rcpt_key(mx_ip), interval_us, count, back,
                                          lead_us)
                grid = RcptPacing(interval_us / 1_000_000, pacing.horizon)
                start = granted.start_us / 1_000_000
                sends, _ = grid.slots(start, start, count)
                return granted._replace(sends=sends)
            except _UNAVAILABLE as exc:
                await self._unavailable("RCPT rate", mx_ip, exc, backoff)

    def _ask(self, key: str, interval_us: int, count: int, back: tuple[int, int],
             lead_us: int) -> asyncio.Future[_Granted]:
        """The grant of ``count`` permits at ``key`` (without ``sends``); the sessions of
        every MX asking within a millisecond share one script."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Granted] = loop.create_future()
        self._asked.append(_Asked(key, interval_us, count, back, lead_us, future))
        if len(self._asked) == 1:
            loop.call_later(0.001, self._send_asked)
        return future

    def _send_asked(self) -> None:
        asked, self._asked = self._asked, []
        task = asyncio.create_task(self._reserve_many(asked))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reserve_many(self, asked: list[_Asked]) -> None:
        sent_at = time.monotonic()  # Redis reads its clock no sooner
        try:
            reply = await _guarded(self._rcpt_script(
                keys=[a.key for a in asked],
                args=[n for a in asked
                      for n in (a.interval_us, a.permits, *a.back, a.lead_us)]))
        except BaseException as exc:
            for *_, future in asked:
                if not future.done():
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        now = _int(reply[0]) / 1_000_000
        for (*_, future), start in zip(asked, reply[1:], strict=True):
            if not future.done():
                future.set_result(_Granted(now, _int(start), sent_at, []))

    async def _renew(self, mx_ip: str, token: str, lease: _Lease,
                     valid_until: float) -> None:
        """Extend the lease ``token`` every ``renew_seconds`` until cancelled.

        Each renewal has its own short timeout, and a failed one is tried again within a
        second. The lease is known good until ``valid_until`` (loop time: the last
        confirmed extension, counted from when it was *sent*, so Redis's clock drops it no
        sooner). If no renewal gets through until shortly before then (this worker cut off
        from a Redis the others still reach), the lease is marked ``lost`` and its session
        must close: another worker may take the slot once Redis drops it. A lease Redis
        lost (a restart without persistence) is put back while the host has room, before
        any new lease is given (see ``_ACQUIRE_LUA``); when it cannot be, it is ``lost``
        too.
        """
        key = self.conn_key(mx_ip)
        loop = asyncio.get_running_loop()
        delay = self.renew_seconds
        while True:
            stale_at = valid_until - self._lost_margin
            await asyncio.sleep(max(0.0, min(delay, stale_at - loop.time())))
            sent = loop.time()
            if sent >= stale_at:
                log.warning("politeness: could not renew the lease on %s in time; closing "
                            "its session", key)
                lease.mark_lost()
                return
            try:
                # the whole time left: a renewal queued behind other commands of a busy
                # worker, or a Redis pausing to fork, is not a loss
                async with asyncio.timeout(stale_at - sent):
                    kept = _int(await _guarded(self._renew_script(
                        keys=[key, self.sharers_key(mx_ip)],
                        args=[token, self._lease_ms, self.limits.get(mx_ip).max_connections,
                              self.worker_id, self._sharer_ms])))
            except _UNAVAILABLE as exc:  # TimeoutError included
                if _refused(exc):  # it will every time: the session goes, the slot too
                    log.error("politeness: Redis refused to renew the lease on %s: %s; "
                              "closing its session", key, exc)
                    lease.mark_lost()
                    return
                self._warn("politeness: could not renew lease on %s: %s", key,
                           str(exc) or type(exc).__name__)
                delay = min(0.2, self.renew_seconds)
                continue
            if kept == 0:
                lease.mark_lost()
                log.warning("politeness: the lease on %s was lost; closing its session", key)
                return
            self._sharers[mx_ip], kept = divmod(kept, 10)
            if kept == 2:
                self._warn("politeness: Redis had lost the lease on %s; registered it again",
                           key)
            valid_until = sent + self.lease_seconds
            delay = self.renew_seconds

    async def _acquire(self, mx_ip: str) -> tuple[str, float]:
        """Take a connection slot of ``mx_ip``; returns the lease token and until when
        (loop time) the lease is known good."""
        key = self.conn_key(mx_ip)
        token = uuid.uuid4().hex
        backoff = self._backoff()
        loop = asyncio.get_running_loop()
        try:
            while True:
                sent = loop.time()
                try:
                    got = _int(await _guarded(self._acquire_script(
                        keys=[key, self.leases_key, self.sharers_key(mx_ip)],
                        args=[self.limits.get(mx_ip).max_connections, token,
                              self._lease_ms, self._grace_ms, self.worker_id,
                              self._sharer_ms])))
                except _UNAVAILABLE as exc:
                    await self._unavailable("connection slot", mx_ip, exc, backoff)
                    continue
                backoff.reset()
                if got < 0:  # the held leases are re-registering (Redis lost them)
                    await asyncio.sleep(min(1.0, -got / 1000))
                    continue
                self._sharers[mx_ip], got = divmod(got, 10)
                if got == 1:
                    return token, sent + self.lease_seconds
                await asyncio.sleep(random.uniform(self.poll_min, self.poll_max))
        except BaseException:
            # Cancelled (or failed) while a script may have run on the server: the lease
            # could exist without us knowing, so remove it rather than leak a slot. A
            # worker that holds no slot of the host is no longer one of its sharers.
            last = not self._held.get(mx_ip)
            if last:
                self._sharers.pop(mx_ip, None)
            await self._release(mx_ip, token, last=last)
            raise

    async def _release(self, mx_ip: str, token: str, *, last: bool = False) -> None:
        """Remove the lease ``token`` (and, when it is this worker's ``last`` of the host,
        this worker from the host's sharers); survives a second cancellation of the
        caller."""
        task = asyncio.ensure_future(self._remove(mx_ip, token, last=last))
        # keep a reference: if the caller is cancelled again, the shielded removal goes
        # on in the background and must not be garbage-collected meanwhile
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _remove(self, mx_ip: str, token: str, *, last: bool) -> None:
        key = self.conn_key(mx_ip)
        for attempt in range(3):
            try:
                if last:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.zrem(key, token)
                        pipe.zrem(self.sharers_key(mx_ip), self.worker_id)
                        await pipe.execute()
                else:
                    await self.redis.zrem(key, token)
                return
            except _UNAVAILABLE as exc:
                if attempt == 2:
                    self._warn(
                        "politeness: could not release lease on %s (it expires by "
                        "itself after %gs): %s", key, self.lease_seconds, exc,
                    )
                    return
                await asyncio.sleep(self.retry_min * (attempt + 1))

    def _backoff(self) -> Backoff:
        return Backoff(self.retry_min, self.retry_max, jitter=True)

    async def _unavailable(self, what: str, mx_ip: str, exc: BaseException,
                           backoff: Backoff) -> None:
        """Warn (throttled) and sleep the next of ``backoff``; a reply Redis gives every
        time is raised instead (:class:`~sinks.redis_client.RedisRefused`), so the
        host's probes fail with it rather than wait for good."""
        if _refused(exc):
            raise _RedisRefused(f"Redis refused the politeness script for {what} of "
                                f"{mx_ip}: {exc}") from None
        self._warn(
            "politeness: Redis unavailable for %s of %s, waiting and retrying: %s",
            what, mx_ip, exc,
        )
        await backoff.sleep()
