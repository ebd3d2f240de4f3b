"""The suppression list in Redis: one set, shared by every worker, the CLI and the API.

Redis runs with AOF and an fsync before every reply (the local stack and compose), so an
entry that was added stays. Key: ``{prefix}suppressed`` (a set of
:func:`checks.suppression.entry_key` keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from checks.suppression import entry_key

__all__ = ["RedisSuppressionList"]


class RedisSuppressionList:
    """:class:`agents.ports.SuppressionList`, and what manages it."""

    def __init__(self, client: Any, *, prefix: str = "mailsift:") -> None:
        self.client = client
        self.key = f"{prefix}suppressed"

    async def matching(self, keys: Sequence[Sequence[str]]) -> list[str | None]:
        distinct = list(dict.fromkeys(k for group in keys for k in group))
        if not distinct:
            return [None for _ in keys]
        found = await self.client.smismember(self.key, distinct)
        listed = {k for k, hit in zip(distinct, found, strict=True) if hit}
        return [next((k for k in group if k in listed), None) for group in keys]

    async def add(self, entries: Iterable[str]) -> int:
        """Add entries (domains or addresses, as a user writes them); how many were new.
        ValueError (one line) for one that is neither, before anything is added."""
        keys = [entry_key(e) for e in entries]
        return int(await self.client.sadd(self.key, *keys)) if keys else 0

    async def remove(self, entries: Iterable[str]) -> int:
        """Remove entries; how many were on the list."""
        keys = [entry_key(e) for e in entries]
        return int(await self.client.srem(self.key, *keys)) if keys else 0

    async def keys(self) -> list[str]:
        """Every stored key, sorted (``domain:…``, then ``address:…`` would sort apart)."""
        members = await self.client.smembers(self.key)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
