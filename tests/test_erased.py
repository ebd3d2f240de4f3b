"""How the stages learn that a job was erased (agents/erased.py), without the stack."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from agents import erased as erased_module
from agents.erased import without_erased
from sinks.memory_jobs import MemoryJobStore

pytestmark = pytest.mark.asyncio


class CountingStore(MemoryJobStore):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[set[str]] = []

    async def erased(self, job_ids: Collection[str]) -> set[str]:
        self.asked.append(set(job_ids))
        return await super().erased(job_ids)


async def test_answers_are_kept_a_second_and_an_erasure_is_heard_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(erased_module.time, "monotonic", lambda: clock[0])
    store = CountingStore()
    services = type("S", (), {"jobs": store, "erased_seen": {}})()
    assert await without_erased(services, "t", ["a", "b", "a"], str) == ["a", "b", "a"]
    await store.erase("a")
    clock[0] += 0.5  # within the second: not asked again, "a" still goes through
    assert await without_erased(services, "t", ["a", "b"], str) == ["a", "b"]
    assert store.asked == [{"a", "b"}]
    clock[0] += 0.6  # past it: asked again, and "a" is dropped from now on
    assert await without_erased(services, "t", ["a", "b"], str) == ["b"]
    clock[0] += 10.0
    assert await without_erased(services, "t", ["a"], str) == []
    # "erased" is for good: it is not asked about again
    assert store.asked == [{"a", "b"}, {"a", "b"}]
