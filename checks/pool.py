"""Connection pools per MX host, shared by every domain the host serves.

Many domains share a few MX hosts (a provider serves thousands of domains from the same
servers), and a list is rarely grouped by domain. So sessions belong to the *MX address*,
not to a domain: :meth:`MxPool.acquire` hands out an open, greeted session (EHLO, and
STARTTLS when offered, already done) to whichever domain group needs that host next, and
:meth:`MxPool.release` takes it back for the next group (a new MAIL transaction after
``RSET``). A session idle for ``idle_seconds`` is closed with ``QUIT``.

Limits:

* a host has at most ``max_connections`` sessions of this process, and each one holds a
  connection slot of the :class:`~checks.politeness.Politeness` policy (global across
  workers with the Redis implementation) for its whole life;
* while other workers have work for the host too (:meth:`Politeness.sharers
  <checks.politeness.Politeness.sharers>`), this process keeps to its share of the host's
  slots (``max_connections`` divided among them, rounded up): it opens no session
  beyond it, and a session given back beyond it is closed. The first worker to reach a
  host does not keep it from the others for as long as it has work, and workers that all
  have work keep their sessions rather than hand slots to and fro (each hand-over is a
  new connection and TLS handshake, and leaves the slot idle meanwhile). When more
  workers have work than the host has slots, a session given back waits only
  ``crowded_idle_seconds`` (not ``idle_seconds``) for the next group;
* a server that answers ``421`` to a new connection while we hold others lowers the
  pool's limit for it to what it accepted, for ``backoff_min`` seconds;
* a ``421`` to a new connection while we hold none (busy with other clients) is asked
  again after a short pause, up to three times, before it counts as a failure;
* a host whose TLS handshake breaks after it accepted STARTTLS gets a new connection
  without TLS at once, and all its sessions go without TLS from then on (a server that
  requires TLS then says so, 530, and the mailbox is ``unknown``);
* a host that refused, timed out or tarpitted is not dialled again at once: it backs off
  ``backoff_min`` × 2^(failures-1) seconds (at most ``backoff_max``, with jitter of up to
  half), and meanwhile :meth:`MxPool.acquire` raises :class:`HostBackoff` at once. A
  server that still holds our earlier, timed-out connection so never sees more than the
  limit from us.

>>> cfg = PoolConfig(max_connections=2)
>>> cfg.backoff_delay(1, jitter=1.0), cfg.backoff_delay(3, jitter=1.0)
(30.0, 120.0)
>>> cfg.backoff_delay(50, jitter=0.5)
450.0
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from checks.model import SmtpReply
from checks.politeness import Politeness, WatchedLease
from checks.smtp import SmtpConnector, SmtpSession, SmtpTransportError, TlsFailed

__all__ = ["PoolConfig", "MxPool", "PooledSession", "HostBackoff", "SessionRefused",
           "PoolStats"]


@dataclass(frozen=True)
class PoolConfig:
    """How pools behave (see :class:`checks.config.EngineConfig` for where it comes from)."""

    port: int = 25
    helo_name: str = "verify.mailsift.invalid"
    max_connections: int = 2
    #: QUIT a session after this many seconds without work
    idle_seconds: float = 1.0
    #: ... or after this many while more workers have work for its host than it has slots
    crowded_idle_seconds: float = 0.05
    #: QUIT a session after this many MAIL transactions (servers limit them too)
    max_transactions: int = 100
    backoff_min: float = 30.0
    backoff_max: float = 900.0
    #: how long what a host showed of itself (a transaction limit, broken TLS) is kept
    learned_seconds: float = 86400.0
    #: pause before asking a host again that answered 421 to a new connection of ours
    #: while we held none (times a jitter in [0.5, 1])
    busy_pause: float = 2.0

    def backoff_delay(self, failures: int, *, jitter: float) -> float:
        """Seconds a host is left alone after ``failures`` consecutive failures;
        ``jitter`` in [0.5, 1] scales it."""
        base = min(self.backoff_max, self.backoff_min * 2.0 ** max(0, failures - 1))
        return float(round(base * jitter, 3))


class SessionRefused(Exception):
    """The server refused EHLO/HELO after its greeting; ``reply`` is what it said."""

    def __init__(self, reply: SmtpReply) -> None:
        super().__init__(f"{reply.code} {reply.message}")
        self.reply = reply


class HostBackoff(Exception):
    """The host failed recently and is left alone for ``seconds`` more; ``cause`` is the
    failure that started the back-off (a :class:`SmtpTransportError` or
    :class:`SessionRefused`)."""

    def __init__(self, ip: str, seconds: float, cause: SmtpTransportError | SessionRefused
                 ) -> None:
        super().__init__(f"{ip} is backing off for {seconds:.0f}s after: {cause}")
        self.ip = ip
        self.seconds = seconds
        self.cause = cause


class PooledSession:
    """A session lent by the pool: use :attr:`session`, then give it back with
    :meth:`MxPool.release`."""

    def __init__(self, ip: str, session: SmtpSession,
                 lease: AbstractAsyncContextManager[None]) -> None:
        self.ip = ip
        self.session = session
        self.lease = lease
        # decided once: an isinstance check against a Protocol walks its members, and
        # slot_lost is asked on every acquire and release
        self._watched: WatchedLease | None = (lease if isinstance(lease, WatchedLease)
                                              else None)
        #: lent before (an idle server may have closed it since: not the host's fault)
        self.reused = False
        #: a MAIL transaction is open and needs RSET before the next one
        self.dirty = False
        self.transactions = 0
        #: RCPT replies received on this connection
        self.rcpts = 0
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def slot_lost(self) -> bool:
        """The connection slot vanished while held (:class:`WatchedLease`): the session
        was dropped, and what it was asked is to be asked again on another."""
        return self._watched is not None and self._watched.lost


@dataclass
class PoolStats:
    opened: int = 0
    reused: int = 0
    closed: int = 0
    backoffs: int = 0


@dataclass
class _Host:
    limit: int
    idle: list[PooledSession] = field(default_factory=list)
    count: int = 0  # sessions open or being opened
    opening: int = 0  # of them, being opened
    leasing: int = 0  # of those, still waiting for their connection slot
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    failures: int = 0
    down_until: float = 0.0
    cause: SmtpTransportError | SessionRefused | None = None
    limit_until: float = 0.0  # a lowered limit holds until then
    # What the host showed of itself is kept for a while, each fact till its own time (a
    # server gets fixed, or reconfigured), and learning one keeps the other no longer.
    #: the recipients it takes per MAIL transaction, once it told us (452 4.5.3)
    rcpt_per_transaction: int | None = None
    transaction_limit_until: float = 0.0
    #: it offers STARTTLS, but the handshake breaks: until then, sessions go without TLS
    tls_broken_until: float = 0.0

    def forget_stale(self, now: float) -> None:
        if self.transaction_limit_until and now >= self.transaction_limit_until:
            self.rcpt_per_transaction, self.transaction_limit_until = None, 0.0
        if self.tls_broken_until and now >= self.tls_broken_until:
            self.tls_broken_until = 0.0

    def learned_anything(self, now: float) -> bool:
        return max(self.transaction_limit_until, self.tls_broken_until) > now


#: past this many hosts known, the idle ones are forgotten (their state is the default)
_MAX_IDLE_HOSTS = 10_000
#: a waiter for a session looks at the host again at least this often
_RECHECK_SECONDS = 1.0
#: how often a host busy with others (421 to a new connection) is asked again at once
_BUSY_RETRIES = 3


def _lost(ps: PooledSession) -> bool:
    """Whether the session's connection slot vanished (see the Redis politeness)."""
    return ps.slot_lost


def _too_many_connections(exc: BaseException) -> bool:
    reply = getattr(exc, "reply", None)
    return isinstance(reply, SmtpReply) and reply.code == 421


class MxPool:
    """Sessions per MX address; see the module docstring."""

    def __init__(self, connector: SmtpConnector, politeness: Politeness, config: PoolConfig,
                 *, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0)) -> None:
        self.connector = connector
        self.politeness = politeness
        self.config = config
        self.stats = PoolStats()
        self._clock = clock
        self._jitter = jitter
        self._hosts: dict[str, _Host] = {}
        self._closing: set[asyncio.Future[Any]] = set()
        self._closed = False

    def _host(self, ip: str) -> _Host:
        state = self._hosts.get(ip)
        if state is None:
            if len(self._hosts) >= _MAX_IDLE_HOSTS:
                self._forget_idle_hosts()
            state = self._hosts[ip] = _Host(limit=self.max_connections(ip))
        return state

    def max_connections(self, ip: str) -> int:
        """Sessions this process may hold to ``ip``: the host's own limit (its provider's,
        ``MAILSIFT_PROVIDER_LIMITS``) if it has one, else the pool's."""
        own = self.politeness.limits.own(ip)
        return own.max_connections if own is not None else self.config.max_connections

    def _forget_idle_hosts(self) -> None:
        """Drop the state of hosts with nothing open or waiting and nothing worth
        remembering (no back-off, no lowered limit, failures long past): a list with many
        MX addresses must not grow the pool for good."""
        now = self._clock()
        for ip in [ip for ip, s in self._hosts.items()
                   if not s.count and not s.idle and not s.waiters
                   and s.limit_until <= now and s.down_until <= now
                   and not s.learned_anything(now)
                   and (not s.failures
                        or s.down_until + self.config.backoff_max <= now)]:
            del self._hosts[ip]

    def transaction_limit(self, ip: str) -> int | None:
        """Recipients per MAIL transaction that ``ip`` showed it takes (None: not known)."""
        state = self._hosts.get(ip)
        if state is None:
            return None
        state.forget_stale(self._clock())
        return state.rcpt_per_transaction

    def learn_transaction_limit(self, ip: str, recipients: int) -> None:
        """Remember that ``ip`` takes only ``recipients`` per transaction (some servers,
        consumer Outlook among them, answer the second RCPT with ``452 4.5.3``)."""
        state = self._host(ip)
        state.forget_stale(self._clock())
        known = state.rcpt_per_transaction
        state.rcpt_per_transaction = recipients if known is None else min(known, recipients)
        state.transaction_limit_until = self._clock() + self.config.learned_seconds

    def share(self, ip: str) -> int:
        """Sessions this process may hold to ``ip`` now: its limit, or, while other
        workers have work for the host too, its share of the host's slots (at least one).
        """
        limit = self._host(ip).limit
        sharers = self.politeness.sharers(ip)
        if sharers <= 1:
            return limit
        # rounded up: no slot left unused (3 slots, 2 workers: 2 each, and the shared
        # limit keeps the second one's second session waiting)
        return min(limit, -(-self.max_connections(ip) // sharers))

    def open_sessions(self, ip: str) -> int:
        """Sessions of this process to ``ip`` (open or being opened)."""
        state = self._hosts.get(ip)
        return state.count if state else 0

    async def acquire(self, host: str, ip: str) -> PooledSession:
        """An open, greeted session to ``ip`` (``host`` is its MX name, for STARTTLS).

        Waits while the host's sessions are all lent. Raises :class:`HostBackoff` while the
        host is backing off, or the failure of opening a new session
        (:class:`SmtpTransportError`, :class:`SessionRefused`), which starts a back-off.
        """
        state = self._host(ip)
        busy_replies = 0
        while True:
            now = self._clock()
            if state.down_until > now and state.cause is not None:
                self._wake(state)  # pass the turn on: the next waiter learns it too
                raise HostBackoff(ip, state.down_until - now, state.cause)
            most = self.max_connections(ip)
            if state.limit != most and now >= state.limit_until:
                state.limit = most
            while state.idle:
                ps = state.idle.pop()
                if ps.idle_timer is not None:
                    ps.idle_timer.cancel()
                    ps.idle_timer = None
                if _lost(ps):  # its slot may be another worker's now
                    await self._close(ps)
                    continue
                ps.reused = True
                self.stats.reused += 1
                return ps
            if state.count < self.share(ip):
                state.count += 1
                state.opening += 1
                try:
                    state.leasing += 1
                    try:
                        lease = await self._lease(ip, state)
                    finally:
                        state.leasing -= 1
                    if lease is None:  # one of our sessions came back meanwhile: take it
                        state.count -= 1
                        continue
                    ps = await self._open(host, ip, lease)
                except (SmtpTransportError, SessionRefused) as exc:
                    state.count -= 1
                    self._wake(state)
                    if _too_many_connections(exc):
                        if state.count > 0:  # it takes no more from us: wait for ours
                            state.limit = max(1, state.count)
                            state.limit_until = now + self.config.backoff_min
                            continue
                        busy_replies += 1
                        if busy_replies <= _BUSY_RETRIES:
                            # busy with other clients (or with a connection another worker
                            # just closed): not a failure of the host, ask again shortly
                            await asyncio.sleep(self.config.busy_pause * self._jitter())
                            continue
                    self._failed(ip, exc)
                    raise
                except BaseException:
                    state.count -= 1
                    self._wake(state)
                    raise
                finally:
                    state.opening -= 1
                state.failures = 0
                self.stats.opened += 1
                return ps
            waiter = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
            try:
                # a wake-up is a hint, the loop re-checks: a lost one costs a second, never
                # a stalled domain
                await asyncio.wait_for(asyncio.shield(waiter), _RECHECK_SECONDS)
            except TimeoutError:
                pass
            finally:
                if waiter in state.waiters:
                    state.waiters.remove(waiter)

    def failed(self, ip: str, exc: SmtpTransportError | SessionRefused) -> None:
        """Report that a session to ``ip`` timed out or broke: the host backs off."""
        self._failed(ip, exc)

    def _failed(self, ip: str, exc: SmtpTransportError | SessionRefused) -> None:
        state = self._host(ip)
        state.failures += 1
        state.cause = exc
        state.down_until = self._clock() + self.config.backoff_delay(
            state.failures, jitter=self._jitter())
        self.stats.backoffs += 1
        while state.waiters:  # everyone waiting for this host learns it at once
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def release(self, ps: PooledSession, *, reuse: bool) -> None:
        """Give a session back: kept for the next group when ``reuse``, else closed."""
        state = self._host(ps.ip)
        if (reuse and not self._closed and not _lost(ps)
                and ps.transactions < self.config.max_transactions
                # other workers have work for the host: beyond our share, it is theirs
                # (one still waiting for a slot meanwhile gives that up and takes this one)
                and state.count - state.leasing <= self.share(ps.ip)):
            crowded = self.politeness.sharers(ps.ip) > self.max_connections(ps.ip)
            state.idle.append(ps)
            ps.idle_timer = asyncio.get_running_loop().call_later(
                self.config.crowded_idle_seconds if crowded else self.config.idle_seconds,
                self._expire, ps)
            self._wake(state)
            return
        await self._close(ps)

    async def aclose(self) -> None:
        """QUIT every idle session at once; sessions lent now close when released, and
        the pool keeps no idle session from now on."""
        self._closed = True
        idle: list[PooledSession] = []
        for state in self._hosts.values():
            idle += state.idle
            state.idle = []
        for ps in idle:
            if ps.idle_timer is not None:
                ps.idle_timer.cancel()
        closing = [*self._closing, *(asyncio.ensure_future(self._close(ps)) for ps in idle)]
        if closing:
            # shielded: a caller that gives up waiting leaves them closing, not leaking
            await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))

    # --- internals ---------------------------------------------------------------------

    def tls_broken(self, ip: str) -> bool:
        """Whether ``ip``'s TLS handshake broke before (its sessions go without TLS)."""
        state = self._hosts.get(ip)
        if state is None:
            return False
        state.forget_stale(self._clock())
        return bool(state.tls_broken_until)

    def learn_tls_broken(self, ip: str) -> None:
        """Remember that ``ip``'s STARTTLS handshake breaks: its sessions go without TLS."""
        self._host(ip).tls_broken_until = self._clock() + self.config.learned_seconds

    async def _lease(self, ip: str, state: _Host) -> AbstractAsyncContextManager[None] | None:
        """A connection slot of ``ip`` (entered), or None when a session of this process to
        ``ip`` was given back while the slot was waited for (all slots held: by this
        process and others), or this process's share of the host's slots shrank to what
        it holds. The caller then takes its own session: a new connection would wait for
        the slot it holds, and the host's work is done meanwhile."""
        lease = self.politeness.connection(ip)
        entering = asyncio.ensure_future(lease.__aenter__())

        def give_up() -> None:
            entering.cancel()  # a slot it took before the cancel is handed back
            entering.add_done_callback(
                lambda f: None if f.cancelled() or f.exception() is not None
                else self._background(lease.__aexit__(None, None, None)))

        try:
            while not entering.done():
                waiter = asyncio.get_running_loop().create_future()
                state.waiters.append(waiter)
                try:
                    await asyncio.wait({entering, waiter}, timeout=_RECHECK_SECONDS,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if waiter in state.waiters:
                        state.waiters.remove(waiter)
                # one of ours came back, or our share shrank (another worker has work for
                # the host now): what this process holds will do
                if not entering.done() and (state.idle or state.count > self.share(ip)):
                    give_up()
                    return None
        except BaseException:
            give_up()
            raise
        entering.result()  # its failure, if any
        return lease

    async def _open(self, host: str, ip: str,
                    lease: AbstractAsyncContextManager[None]) -> PooledSession:
        """A greeted session on ``lease`` (a slot of ``ip`` already entered)."""
        try:
            try:
                session = await self._connect(host, ip, tls=not self.tls_broken(ip))
            except TlsFailed:
                # offered, accepted, then broken: the same slot, a new connection without
                # TLS (the broken one is closed already), and so for a day for the host
                self.learn_tls_broken(ip)
                session = await self._connect(host, ip, tls=False)
        except BaseException as exc:
            await lease.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if isinstance(lease, WatchedLease):  # a slot lost mid-session drops the session
            lease.watch(session.abort)
        return PooledSession(ip, session, lease)

    async def _connect(self, host: str, ip: str, *, tls: bool) -> SmtpSession:
        session = await self.connector.open(ip, self.config.port)
        try:
            await self._greet(session, host, tls=tls)
        except BaseException:
            await session.quit()
            raise
        return session

    async def _greet(self, session: SmtpSession, host: str, *, tls: bool = True) -> None:
        hello = await session.hello(self.config.helo_name)
        if hello.code >= 400:
            raise SessionRefused(hello)
        if tls and session.supports("starttls") and not session.tls_active:
            started = await session.starttls(host)
            if started.code == 220:
                hello = await session.hello(self.config.helo_name)
                if hello.code >= 400:
                    raise SessionRefused(hello)

    def _background(self, aw: Coroutine[Any, Any, object]) -> None:
        """Run ``aw`` on its own; :meth:`aclose` waits for it."""
        task = asyncio.ensure_future(aw)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _expire(self, ps: PooledSession) -> None:
        state = self._host(ps.ip)
        if ps in state.idle:
            state.idle.remove(ps)
            self._background(self._close(ps))

    async def _close(self, ps: PooledSession) -> None:
        state = self._host(ps.ip)
        try:
            await ps.session.quit()
        finally:
            try:
                await ps.lease.__aexit__(None, None, None)
            finally:
                state.count -= 1
                self.stats.closed += 1
                self._wake(state)

    @staticmethod
    def _wake(state: _Host) -> None:
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

