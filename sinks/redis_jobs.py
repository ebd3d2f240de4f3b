"""The job bookkeeping in Redis, shared by every worker, and what happens when Redis loses it.

:class:`RedisJobStore` is a :class:`agents.jobstore.JobStore` with exactly the semantics
of :class:`sinks.memory_jobs.MemoryJobStore`, each operation one Lua script (atomic, and
idempotent under redelivery).

Redis is run with AOF and an fsync before every reply (the local stack and
``docker-compose.yml`` do), so a restart or a crash loses no acknowledged write. A Redis
that lost everything anyway (run without persistence, flushed, replaced) is noticed: every
script first checks the ``{prefix}jobs:intact`` marker, which only a complete state has.
Without it the script refuses (``MAILSIFT_JOBS_LOST``); one process takes a lock and
rebuilds the state from the event log (``streams.job_rebuild``: totals, duplicates and
completions from ``jobs``, claims and finals from ``verdicts``), the others wait, and then
every caller goes on as if nothing happened. Events whose bookkeeping was refused were not
acknowledged, so their stage counts them afterwards.

A claim whose task had no verdict yet when the state was lost cannot be rebuilt. If a
later duplicate of that address is then verified on its own, two submissions of one
address get final verdicts: the one that does not match the claim counts as a duplicate
(by its source, once), so the job's count still comes out exact.

Key layout (``prefix`` defaults to ``"mailsift:"``)::

    {prefix}jobs:intact                string  present while the job state is complete
    {prefix}jobs:rebuilding            string  lock of the process rebuilding it (PX)
    {prefix}job:{key}:claims           hash    dedupe key -> source of first submission
    {prefix}job:{key}:dups             set     sources counted as duplicates
    {prefix}job:{key}:total            string  number of submissions
    {prefix}job:{key}:finals           hash    dedupe key -> final verdict
    {prefix}job:{key}:by_verdict       hash    verdict -> count of final verdicts
    {prefix}job:{key}:completed        string  "1" once completion was announced
    {prefix}jobs:erased                zset    job ids erased on request -> when (ms)

An erased job (:meth:`RedisJobStore.erase`) loses every key of every run at once; its id
stays in ``jobs:erased`` (no address), which the stages ask before they count anything of
a job, so a late event of it never brings a key back. The rebuild puts the ids back from
the ``deleted`` events of the log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from agents.jobstore import Final, JobProgress
from sinks.redis_client import as_int, as_text, guarded

__all__ = ["RedisJobStore", "Rebuild", "LOST", "nothing_to_rebuild"]

log = logging.getLogger(__name__)

#: the error a script answers when the job state is not known to be complete
LOST = "MAILSIFT_JOBS_LOST"
#: how a store gets its state back: fill ``store`` (through its ``restore_*`` methods)
Rebuild = Callable[["RedisJobStore"], Awaitable[None]]

# Every job script gets the job's six keys in this order, so each write can refresh the
# TTL of all of them (a job's keys live and expire together), and the marker seventh.
_JOB_PARTS = ("claims", "dups", "total", "finals", "by_verdict", "completed")

_TOUCH = """
local function touch(ttl_ms)
  for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ttl_ms) end
end
"""
_GATE = f"""
if redis.call('EXISTS', KEYS[7]) == 0 then return redis.error_reply('{LOST}') end
"""
# One final verdict: ``k`` dedupe key, ``v`` verdict, ``src`` the submission's source ('' if
# unknown). The claim decides whose verdict it is; a verdict of another submission of the
# same address (its claim was lost with the state) counts that submission as a duplicate.
_FINAL_FN = """
local function final(k, v, src)
  local claim = redis.call('HGET', KEYS[1], k)
  if src ~= '' and not claim then
    redis.call('HSET', KEYS[1], k, src)
    claim = src
  end
  if src ~= '' and claim ~= src then
    redis.call('SADD', KEYS[2], src)
    return 0
  end
  if redis.call('HSETNX', KEYS[4], k, v) == 1 then
    redis.call('HINCRBY', KEYS[5], v, 1)
    return 1
  end
  return 0
end
"""
#: the job run's counters: {total or false, finals, duplicates, completed, {verdict, count…}}
_STATE = """{redis.call('GET', KEYS[3]), redis.call('HLEN', KEYS[4]),
 redis.call('SCARD', KEYS[2]), redis.call('EXISTS', KEYS[6]), redis.call('HGETALL', KEYS[5])}"""

# ARGV = ttl_ms, then dedupe_key, source pairs. Returns 1/0 per pair (first or not).
_CLAIM_MANY_LUA = _TOUCH + _GATE + """
local out = {}
for i = 2, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  out[#out + 1] = (redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1]) and 1 or 0
end
touch(ARGV[1])
return out
"""

# ARGV = ttl_ms, then sources. Returns the state (``_STATE``).
_DUPLICATES_LUA = _TOUCH + _GATE + f"""
for i = 2, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
touch(ARGV[1])
return {_STATE}
"""

# ARGV = total, ttl_ms
_TOTAL_LUA = _TOUCH + _GATE + """
redis.call('SET', KEYS[3], ARGV[1])
touch(ARGV[2])
return 1
"""

# ARGV = ttl_ms, then dedupe_key, verdict, source triples.
# Returns {new count, state} (``_STATE``).
_FINALS_BODY = _FINAL_FN + """
local new = 0
for i = 2, #ARGV, 3 do new = new + final(ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
touch(ARGV[1])
"""
_FINALS_LUA = _TOUCH + _GATE + _FINALS_BODY + f"return {{new, {_STATE}}}\n"

# ARGV = ttl_ms
_COMPLETED_LUA = _TOUCH + _GATE + """
local ok = redis.call('SET', KEYS[6], '1', 'NX')
touch(ARGV[1])
if ok then return 1 end
return 0
"""

_PROGRESS_LUA = _GATE + f"return {_STATE}\n"

# The rebuild's writes: the same effects without the marker check.
# ARGV = ttl_ms, total or '', completed ('1' or ''), then duplicate sources.
_RESTORE_LUA = _TOUCH + """
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2]) end
if ARGV[3] == '1' then redis.call('SET', KEYS[6], '1') end
for i = 4, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
touch(ARGV[1])
return 1
"""
_RESTORE_FINALS_LUA = _TOUCH + _FINALS_BODY + "return new\n"


async def nothing_to_rebuild(store: RedisJobStore) -> None:
    """The ``rebuild`` of a store whose state starts empty (tests, a private Redis)."""


class RedisJobStore:
    """A :class:`agents.jobstore.JobStore` in Redis, shared by every worker.

    Every write refreshes the TTL (``ttl_seconds``, default 7 days) of all the job's keys.
    Redis errors propagate: the stream processor must not acknowledge an event whose
    bookkeeping failed. A lost state is rebuilt by ``rebuild`` (see the module
    docstring); a store without one waits for a process that has one.
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        prefix: str = "mailsift:",
        ttl_seconds: float = 7 * 86_400.0,
        rebuild: Rebuild | None = None,
        rebuild_lock_seconds: float = 600.0,
    ) -> None:
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.rebuild = rebuild
        self.intact_key = f"{prefix}jobs:intact"
        self.lock_key = f"{prefix}jobs:rebuilding"
        self.erased_key = f"{prefix}jobs:erased"
        self._lock_ms = max(1, math.ceil(rebuild_lock_seconds * 1000))
        self._ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        self._recovering: asyncio.Lock | None = None
        register = redis.register_script
        self._claim_many = register(_CLAIM_MANY_LUA)
        self._finals = register(_FINALS_LUA)
        self._duplicates = register(_DUPLICATES_LUA)
        self._total = register(_TOTAL_LUA)
        self._completed = register(_COMPLETED_LUA)
        self._progress = register(_PROGRESS_LUA)
        self._restore = register(_RESTORE_LUA)
        self._restore_finals = register(_RESTORE_FINALS_LUA)

    def keys(self, key: str) -> list[str]:
        """The Redis keys of job run ``key``: claims, dups, total, finals, by_verdict,
        completed."""
        return [f"{self.prefix}job:{key}:{part}" for part in _JOB_PARTS]

    # --- the JobStore operations ---------------------------------------------------------

    async def claim(self, key: str, dedupe_key: str, source: str) -> bool:
        """True when ``source`` is the first submission of ``dedupe_key`` in the job run."""
        return (await self.claim_many(key, [(dedupe_key, source)]))[0]

    async def claim_many(self, key: str, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """:meth:`claim` for many ``(dedupe_key, source)`` in order, in one script."""
        if not claims:
            return []
        args: list[Any] = [self._ttl_ms]
        for dedupe_key, source in claims:
            args += [dedupe_key, source]
        got = await self._run(self._claim_many, key, args)
        return [as_int(g) == 1 for g in got]

    async def record_finals(self, key: str, finals: Sequence[Final]) -> JobProgress:
        """Count many final verdicts (once per dedupe key) and read the progress: one script."""
        args: list[Any] = [self._ttl_ms]
        for dedupe_key, verdict, source in finals:
            args += [dedupe_key, verdict, source or ""]
        _new, state = await self._run(self._finals, key, args)
        return _progress(state)

    async def record_final(self, key: str, dedupe_key: str, verdict: str,
                           source: str | None = None) -> bool:
        """Count a final verdict once per dedupe key; True when it was new."""
        args = [self._ttl_ms, dedupe_key, verdict, source or ""]
        new, _state = await self._run(self._finals, key, args)
        return as_int(new) == 1

    async def record_duplicates(self, key: str, sources: Sequence[str]) -> JobProgress:
        """Count many duplicate submissions (once per source) and read the progress: one
        script."""
        return _progress(await self._run(self._duplicates, key, [self._ttl_ms, *sources]))

    async def set_total(self, key: str, total: int) -> None:
        """The number of submissions in the job run."""
        await self._run(self._total, key, [int(total), self._ttl_ms])

    async def progress(self, key: str) -> JobProgress:
        """A consistent snapshot of the job run's counters."""
        return _progress(await self._run(self._progress, key, []))

    async def mark_completed(self, key: str) -> bool:
        """True exactly once per job run (until its keys expire)."""
        return as_int(await self._run(self._completed, key, [self._ttl_ms])) == 1

    async def erase(self, job_id: str) -> int:
        """Remember ``job_id`` as erased, then remove the keys of all its runs (``job_id``
        and ``job_id@replay``); the number of keys removed."""
        await guarded(self.redis.zadd(self.erased_key, {job_id: int(time.time() * 1000)}))
        runs = {job_id}
        # replay runs are ``job_id@replay_id``; a key is the job's only when what follows
        # the ``@`` is one replay id (job "a" must not take job "a@b:c"'s keys)
        head = f"{self.prefix}job:{job_id}@"
        async for found in self.redis.scan_iter(match=f"{self.prefix}job:"
                                                f"{_glob_escape(job_id)}@*", count=1000):
            rest = as_text(found)[len(head):]
            replay_id, _, part = rest.rpartition(":")
            if part in _JOB_PARTS and replay_id and not set(replay_id) & {"@", ":"}:
                runs.add(f"{job_id}@{replay_id}")
        removed = 0
        for run in sorted(runs):
            removed += as_int(await guarded(self.redis.unlink(*self.keys(run))))
        return removed

    async def erased(self, job_ids: Collection[str]) -> set[str]:
        """Those of ``job_ids`` that were erased: one round trip (``ZMSCORE``, and the
        intact marker)."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return set()
        while True:
            # with the state lost, the erased ids are too: rebuild it first (as every job
            # script does), or an erased job's retries would be probed again
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(self.intact_key)
                pipe.zmscore(self.erased_key, ids)
                intact, scores = await guarded(pipe.execute())
            if intact:
                return {job for job, score in zip(ids, scores, strict=True)
                        if score is not None}
            await self._recover()

    async def restore_erased(self, job_ids: Collection[str]) -> None:
        """Put back erased job ids (for ``rebuild``: the ``deleted`` events of the log)."""
        if job_ids:
            now = int(time.time() * 1000)
            await guarded(self.redis.zadd(self.erased_key, dict.fromkeys(job_ids, now), nx=True))

    # --- rebuilding a lost state ---------------------------------------------------------

    async def restore(self, key: str, *, total: int | None = None, completed: bool = False,
                      duplicates: Sequence[str] = ()) -> None:
        """Put back a job run's total, completion and duplicate sources (for ``rebuild``)."""
        args = [self._ttl_ms, "" if total is None else int(total), "1" if completed else "",
                *duplicates]
        await guarded(self._restore(keys=self.keys(key), args=args))

    async def restore_finals(self, key: str, finals: Sequence[Final]) -> None:
        """Put back final verdicts and their claims (for ``rebuild``)."""
        args: list[Any] = [self._ttl_ms]
        for dedupe_key, verdict, source in finals:
            args += [dedupe_key, verdict, source or ""]
        await guarded(self._restore_finals(keys=self.keys(key), args=args))

    async def _run(self, script: Any, key: str, args: list[Any]) -> Any:
        keys = [*self.keys(key), self.intact_key]
        while True:
            try:
                return await guarded(script(keys=keys, args=args))
            except ResponseError as exc:
                if LOST not in str(exc):
                    raise
            await self._recover()

    async def _recover(self) -> None:
        """Wait until the job state is complete again, rebuilding it if nobody else is."""
        if self._recovering is None:
            self._recovering = asyncio.Lock()
        async with self._recovering:  # one recovery per process; the others wait for it
            while not await guarded(self.redis.exists(self.intact_key)):
                token = uuid.uuid4().hex
                rebuild = self.rebuild
                locked: Any = rebuild is not None and await guarded(
                    self.redis.set(self.lock_key, token, nx=True, px=self._lock_ms))
                if locked and rebuild is not None:
                    try:
                        log.warning("no job state in Redis (a new Redis, or one that lost "
                                    "its data): reading it from the event log")
                        await rebuild(self)
                        await guarded(self.redis.set(self.intact_key, "1"))
                        log.warning("the job state is back; jobs go on")
                    finally:
                        if await guarded(self.redis.get(self.lock_key)) == token.encode():
                            await guarded(self.redis.delete(self.lock_key))
                else:
                    await asyncio.sleep(0.5)  # another process is rebuilding it


def _glob_escape(text: str) -> str:
    r"""``text`` matched literally in a ``SCAN MATCH`` pattern.

    >>> _glob_escape("a*b[1]?")
    'a\\*b\\[1\\]\\?'
    """
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _progress(state: Any) -> JobProgress:
    """A :class:`JobProgress` from a script's ``{total, finals, dups, completed, by}``."""
    raw_total, n_final, n_dups, n_completed, raw_by = state
    flat = list(raw_by or [])
    by: dict[str, int] = {}
    for verdict, count in zip(flat[::2], flat[1::2], strict=True):
        name = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if as_int(count) > 0:
            by[name] = as_int(count)
    return JobProgress(
        None if raw_total is None or raw_total is False else as_int(raw_total),
        as_int(n_final),
        as_int(n_dups),
        by,
        as_int(n_completed) > 0,
    )
