"""A small in-process map whose entries expire: the first level in front of shared caches.

>>> now = [0.0]
>>> m: TtlMap[str] = TtlMap(max_entries=2, clock=lambda: now[0])
>>> m.put("a", "x", ttl=10)
>>> m.get("a")
('x', 10.0)
>>> now[0] = 10.0
>>> m.get("a") is None
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlMap"]

V = TypeVar("V")


class TtlMap(Generic[V]):
    """Entries live ``ttl`` seconds on ``clock``; at most ``max_entries`` (when full, the
    expired ones go first, then the oldest inserted). ``max_entries=0`` keeps nothing."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._data: dict[Hashable, tuple[float, V]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> tuple[V, float] | None:
        """The value and its remaining seconds, or None when absent or expired."""
        item = self._data.get(key)
        if item is None:
            return None
        remaining = item[0] - self._clock()
        if remaining <= 0:
            del self._data[key]
            return None
        return item[1], remaining

    def discard(self, key: Hashable) -> None:
        self._data.pop(key, None)

    def put(self, key: Hashable, value: V, ttl: float) -> None:
        if ttl <= 0 or self.max_entries <= 0:
            return
        now = self._clock()
        self._data.pop(key, None)
        if len(self._data) >= self.max_entries:
            for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
                del self._data[k]
            while len(self._data) >= self.max_entries:
                del self._data[next(iter(self._data))]
        self._data[key] = (now + ttl, value)
