"""Duplicate events per second through the progress stage, on the local stack's Redis.

A list with many repeats sends one ``duplicate`` job event per repeat (the 1M-row upload
test has 900,000). This runs :class:`agents.progress.ProgressHandler` over N such events
of one job, in stage batches, twice in the same run against the same Redis:

* ``per event``: the round trips of the stage before the batching (a script that adds
  the source, then a ``progress`` script, for each event), by a store whose
  ``record_duplicates`` makes those two calls per source;
* ``batched``: the store as it is (one script per job and batch).

    .venv/bin/python -m bench.progress_duplicates --events 100000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence

from agents.jobstore import JobProgress
from agents.ports import RawEvent, Record, Services
from agents.progress import ProgressHandler
from agents.topics import TopicNames
from checks import Engine, EngineConfig
from mailsift.settings import load_settings
from schemas import JobEvent
from sinks.redis_client import redis_client
from sinks.redis_jobs import RedisJobStore


class PerEventStore(RedisJobStore):
    """The round trips of the progress stage before duplicates were batched."""

    async def record_duplicates(self, key: str, sources: Sequence[str]) -> JobProgress:
        progress = await self.progress(key)
        for source in sources:  # a SADD script, then a progress script, per event
            await super().record_duplicates(key, [source])
            progress = await self.progress(key)
        return progress


class NoPublisher:
    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        return None

    async def publish_many(self, records: Sequence[Record]) -> None:
        return None


async def run(store: RedisJobStore, n: int, batch: int) -> float:
    settings = load_settings()
    names = TopicNames.from_settings(settings)
    handler = ProgressHandler(Services(settings, names, Engine(EngineConfig()), store,
                                       NoPublisher()))
    job = uuid.uuid4().hex
    events = [RawEvent(names.jobs, 0, i, job.encode(),
                       JobEvent.create(job, "duplicate", source=f"s:0:{i}").dumps())
              for i in range(n)]
    started = time.perf_counter()
    for i in range(0, n, batch):
        await handler(events[i:i + batch])
    elapsed = time.perf_counter() - started
    assert (await store.progress(job)).duplicates == n
    await store.erase(job)
    return elapsed


async def main(n: int, batch: int) -> None:
    settings = load_settings()
    client = redis_client(settings.redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    try:
        for name, cls in (("per event", PerEventStore), ("batched", RedisJobStore)):
            store = cls(client, prefix=prefix)
            await client.set(store.intact_key, "1")
            elapsed = await run(store, n, batch)
            print(f"{name:10} {n} duplicate events in batches of {batch}: {elapsed:6.2f} s = "
                  f"{n / elapsed:9.0f} events/s ({elapsed / n * 1e6:.1f} µs each)")
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch))
