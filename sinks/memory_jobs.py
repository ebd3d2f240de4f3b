"""An in-process :class:`agents.jobstore.JobStore` (tests, a single worker without Redis)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agents.jobstore import Final, JobProgress

__all__ = ["MemoryJobStore"]


class MemoryJobStore:
    """In-process :class:`JobStore` (tests, single worker)."""

    def __init__(self) -> None:
        self._claims: dict[str, dict[str, str]] = {}
        self._dups: dict[str, set[str]] = {}
        self._totals: dict[str, int] = {}
        self._final: dict[str, dict[str, str]] = {}
        self._completed: set[str] = set()
        self._erased: set[str] = set()

    async def claim(self, key: str, dedupe_key: str, source: str) -> bool:
        first = self._claims.setdefault(key, {}).setdefault(dedupe_key, source)
        return first == source

    async def claim_many(self, key: str, claims: Sequence[tuple[str, str]]) -> list[bool]:
        return [await self.claim(key, d, s) for d, s in claims]

    async def record_duplicates(self, key: str, sources: Sequence[str]) -> JobProgress:
        self._dups.setdefault(key, set()).update(sources)
        return await self.progress(key)

    async def set_total(self, key: str, total: int) -> None:
        self._totals[key] = total

    async def record_final(self, key: str, dedupe_key: str, verdict: str,
                           source: str | None = None) -> bool:
        if source:
            claimed = self._claims.setdefault(key, {}).setdefault(dedupe_key, source)
            if claimed != source:  # another submission of the address, verified on its own
                self._dups.setdefault(key, set()).add(source)
                return False
        finals = self._final.setdefault(key, {})
        if dedupe_key in finals:
            return False
        finals[dedupe_key] = verdict
        return True

    async def record_finals(self, key: str, finals: Sequence[Final]) -> JobProgress:
        for dedupe_key, verdict, source in finals:
            await self.record_final(key, dedupe_key, verdict, source)
        return await self.progress(key)

    async def progress(self, key: str) -> JobProgress:
        finals = self._final.get(key, {})
        by: dict[str, int] = {}
        for v in finals.values():
            by[v] = by.get(v, 0) + 1
        return JobProgress(self._totals.get(key), len(finals), len(self._dups.get(key, ())),
                           by, key in self._completed)

    async def mark_completed(self, key: str) -> bool:
        if key in self._completed:
            return False
        self._completed.add(key)
        return True

    async def erase(self, job_id: str) -> int:
        self._erased.add(job_id)
        runs = {k for table in (self._claims, self._dups, self._totals, self._final)
                for k in table if k == job_id or k.startswith(job_id + "@")}
        runs |= {k for k in self._completed if k == job_id or k.startswith(job_id + "@")}
        for table in (self._claims, self._dups, self._totals, self._final):
            for k in runs:
                table.pop(k, None)
        self._completed -= runs
        return len(runs)

    async def erased(self, job_ids: Collection[str]) -> set[str]:
        return set(job_ids) & self._erased
