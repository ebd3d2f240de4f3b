"""Daily allowances in Redis: how much of something may be used per UTC day, shared by
every process (the API's per-token address quota; the probe budgets per domain and per MX
host).

One counter per name and UTC day (``{prefix}daily:{name}:{day}``, the day counted from
Redis's own clock, so every machine agrees when a day ends); it expires a day after its
day is over. :meth:`DailyAllowance.take` is one Lua script: it grants what fits under the
limit and counts it, atomically, so two processes never both get the last unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sinks.redis_client import as_int, guarded

__all__ = ["DailyAllowance", "Taken"]

# KEYS: none (the key depends on Redis's day). ARGV = prefix, name, n, limit, partial ('1').
# Returns {granted, used after, seconds until the day ends}.
_TAKE_LUA = """
local now = redis.call('TIME')
local secs = tonumber(now[1])
local day = math.floor(secs / 86400)
local key = ARGV[1] .. ARGV[2] .. ':' .. day
local n, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local used = tonumber(redis.call('GET', key) or '0')
local grant = n
if used + n > limit then
  if ARGV[5] == '1' then grant = math.max(0, limit - used) else grant = 0 end
end
if grant > 0 then
  used = redis.call('INCRBY', key, grant)
  redis.call('EXPIREAT', key, (day + 2) * 86400)
end
return {grant, used, (day + 1) * 86400 - secs}
"""
_GIVE_BACK_LUA = """
local day = math.floor(tonumber(redis.call('TIME')[1]) / 86400)
local key = ARGV[1] .. ARGV[2] .. ':' .. day
local used = tonumber(redis.call('GET', key) or '0')
local back = math.min(used, tonumber(ARGV[3]))
if back > 0 then redis.call('DECRBY', key, back) end
return back
"""


@dataclass(frozen=True)
class Taken:
    """What :meth:`DailyAllowance.take` granted, the day's use after it, and the seconds
    until the day (UTC) ends and the allowance is whole again."""

    granted: int
    used: int
    resets_in: int


class DailyAllowance:
    """Per-name daily counters with a limit given at each take."""

    def __init__(self, client: Any, *, prefix: str = "mailsift:") -> None:
        self.client = client
        self.prefix = f"{prefix}daily:"
        self._take = client.register_script(_TAKE_LUA)
        self._give_back = client.register_script(_GIVE_BACK_LUA)

    async def take(self, name: str, n: int, limit: int, *, partial: bool = False) -> Taken:
        """Take ``n`` of today's ``limit`` for ``name``: all or nothing, or with
        ``partial`` as much as is left."""
        granted, used, resets_in = await guarded(self._take(
            keys=[], args=[self.prefix, name, int(n), int(limit), "1" if partial else ""]))
        return Taken(as_int(granted), as_int(used), as_int(resets_in))

    async def give_back(self, name: str, n: int) -> None:
        """Return ``n`` taken today that were not used after all (a submission failed)."""
        if n > 0:
            await guarded(self._give_back(keys=[], args=[self.prefix, name, int(n)]))
