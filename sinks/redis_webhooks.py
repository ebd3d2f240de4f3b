"""The webhook outbox: scheduled deliveries in Redis, so none is lost to a crash.

A completed job with a webhook gets one *delivery*: an id (``X-Mailsift-Delivery``, the same
on every attempt, so a receiver keeps exactly one), the signed body, and a schedule.
Every API instance takes due deliveries from the same outbox; Redis runs with AOF
(``appendfsync always``), so a scheduled delivery outlives a restart of either.

Keys (``{prefix}`` is ``MAILSIFT_REDIS_PREFIX``):

===================================  ======  ===========================================
``{prefix}webhooks:due``             zset    job ids by when their next attempt is due
                                             (ms, Redis time)
``{prefix}webhook:{job_id}``         hash    delivery_id, url, body, state, attempts,
                                             created_at, next_at, delivered_at
``{prefix}webhook:{job_id}:log``     list    one JSON entry per finished attempt
===================================  ======  ===========================================

*Claim, then POST, then record.* :meth:`RedisWebhookOutbox.claim_due` takes the due
deliveries and moves each one ``lease_seconds`` into the future in the same script, so an
instance that dies between the claim and the POST (or during it) loses nothing: the
delivery is due again when the lease ends, and its attempt counts as one that got no
answer. :meth:`RedisWebhookOutbox.record` applies an attempt's outcome only when the
attempt is still the delivery's latest claim, so a late answer never reschedules a
delivery another instance has taken since.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio

from schemas.base import utc_now_iso
from sinks.redis_client import as_int, as_text, guarded

__all__ = ["Due", "RedisWebhookOutbox", "State"]

State = Literal["pending", "retrying", "delivered", "failed"]

#: where the API kept "this job's webhook was claimed" before the outbox (read only, so
#: jobs whose webhook an older version sent are not sent again after an upgrade)
LEGACY_SENT_PREFIX = "mailsift:api:webhook-sent:"

# KEYS[1] = delivery hash, KEYS[2] = due zset, KEYS[3] = the marker of a webhook sent by
# a version before the outbox; ARGV = job id, delivery id, url, body, ttl s. A delivery
# is scheduled once: a completion seen again (a redelivered event, a second instance,
# a new consumer group reading the topic from its start) finds it, or the marker, there.
_SCHEDULE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'delivery_id', ARGV[2], 'url', ARGV[3], 'body', ARGV[4],
           'state', 'pending', 'attempts', 0, 'created_at', now, 'next_at', now)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1
"""

# KEYS[1] = due zset; ARGV = lease ms, limit, hash key prefix. Returns, per claimed
# delivery: job id, attempt, delivery id, url, body.
_CLAIM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local fields = redis.call('HMGET', key, 'delivery_id', 'url', 'body')
  if not fields[1] then
    redis.call('ZREM', KEYS[1], id)  -- expired with its job: nothing to send
  else
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
    local attempt = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'next_at', now + tonumber(ARGV[1]))
    table.insert(out, id)
    table.insert(out, attempt)
    table.insert(out, fields[1])
    table.insert(out, fields[2])
    table.insert(out, fields[3])
  end
end
return out
"""

# KEYS[1] = delivery hash, KEYS[2] = due zset, KEYS[3] = log; ARGV = job id, attempt,
# log entry (JSON), new state, delay ms before the next attempt (retrying), ttl s.
# Returns 1 when applied, 0 when a later claim owns the delivery (only logged).
_RECORD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- the delivery is gone (its job was erased while this attempt was out): write nothing
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
local current = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '-1')
local state = redis.call('HGET', KEYS[1], 'state')
if current ~= tonumber(ARGV[2]) or state == 'delivered' or state == 'failed' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
if ARGV[4] == 'retrying' then
  local due = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'next_at', due)
  redis.call('ZADD', KEYS[2], due, ARGV[1])
else
  redis.call('HDEL', KEYS[1], 'next_at')
  redis.call('ZREM', KEYS[2], ARGV[1])
  if ARGV[4] == 'delivered' then redis.call('HSET', KEYS[1], 'delivered_at', now) end
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed delivery: POST ``body`` to ``url`` now, then :meth:`~RedisWebhookOutbox.record`."""

    job_id: str
    attempt: int
    delivery_id: str
    url: str
    body: bytes


def _iso(ms: Any) -> str | None:
    if ms is None:
        return None
    at = datetime.fromtimestamp(as_int(ms) / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RedisWebhookOutbox:
    """Scheduled webhook deliveries, shared by every API instance."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "mailsift:",
                 ttl_seconds: float = 7 * 86_400, lease_seconds: float = 60.0) -> None:
        if not lease_seconds > 0:
            raise ValueError("lease_seconds must be positive")
        self.redis = client
        self.prefix = prefix
        self.due_key = f"{prefix}webhooks:due"
        self._hash_prefix = f"{prefix}webhook:"
        self._ttl = max(1, math.ceil(ttl_seconds))
        self._lease_ms = max(1, math.ceil(lease_seconds * 1000))
        self._schedule = client.register_script(_SCHEDULE_LUA)
        self._claim = client.register_script(_CLAIM_LUA)
        self._record = client.register_script(_RECORD_LUA)

    def key(self, job_id: str) -> str:
        return f"{self._hash_prefix}{job_id}"

    def log_key(self, job_id: str) -> str:
        return f"{self._hash_prefix}{job_id}:log"

    async def schedule(self, job_id: str, url: str, body: bytes) -> bool:
        """Schedule the job's delivery, due now; False when it already was."""
        created = await guarded(self._schedule(
            keys=[self.key(job_id), self.due_key, f"{LEGACY_SENT_PREFIX}{job_id}"],
            args=[job_id, uuid.uuid4().hex, url, body, self._ttl]))
        return bool(as_int(created))

    async def claim_due(self, limit: int = 20) -> list[Due]:
        """Take up to ``limit`` due deliveries (each is leased, see the module doc)."""
        raw: Sequence[Any] = await guarded(self._claim(
            keys=[self.due_key], args=[self._lease_ms, limit, self._hash_prefix]))
        out = []
        for i in range(0, len(raw), 5):
            job_id, attempt, delivery_id, url, body = raw[i:i + 5]
            out.append(Due(as_text(job_id), as_int(attempt), as_text(delivery_id), as_text(url),
                           bytes(body)))
        return out

    async def record(self, due: Due, state: State, outcome: str, *,
                     status: int | None = None, retry_in: float = 0.0) -> bool:
        """Log attempt ``due.attempt``'s outcome and apply ``state`` (``retrying``: due
        again in ``retry_in`` seconds). False when a later claim owns the delivery."""
        entry = json.dumps({"attempt": due.attempt, "at": utc_now_iso(), "outcome": outcome,
                            "status": status, "state": state})
        applied = await guarded(self._record(
            keys=[self.key(due.job_id), self.due_key, self.log_key(due.job_id)],
            args=[due.job_id, due.attempt, entry, state, max(0, math.ceil(retry_in * 1000)),
                  self._ttl]))
        return bool(as_int(applied))

    async def forget(self, job_id: str) -> int:
        """Drop the job's delivery, whatever its state (the job was erased): keys removed."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.due_key, job_id)
            pipe.unlink(self.key(job_id), self.log_key(job_id), f"{LEGACY_SENT_PREFIX}{job_id}")
            _due, removed = await guarded(pipe.execute())
        return as_int(removed)

    async def status(self, job_id: str) -> dict[str, Any] | None:
        """The delivery of ``job_id`` as ``GET /v1/jobs/{id}`` shows it (None: none yet)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.key(job_id), "delivery_id", "state", "attempts", "created_at",
                       "next_at", "delivered_at")
            pipe.lrange(self.log_key(job_id), 0, -1)
            fields, log = await pipe.execute()
        delivery_id, state, attempts, created, next_at, delivered = fields
        if delivery_id is None:
            return None
        state_name = as_text(state)
        return {
            "delivery_id": as_text(delivery_id),
            "state": state_name,
            "attempts": as_int(attempts or 0),
            "scheduled_at": _iso(created),
            "next_attempt_at": _iso(next_at) if state_name in ("pending", "retrying")
            else None,
            "delivered_at": _iso(delivered),
            "log": [json.loads(entry) for entry in log],
        }
