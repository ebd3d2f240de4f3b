"""Domain stage: verify addresses (batched per domain) and decide verdict or retry.

A temporary outcome (greylisting, 4xx, timeouts, DNS errors) goes to the retry tier of its
attempt with a due time (``MAILSIFT_RETRY_DELAYS``); after the last tier, the verdict is
final (``unknown`` with the last reason). An address its daily probe budget had no room
for waits in ``retries.budget`` for the next UTC day (not counted as an attempt), or, when
its job asked not to wait, gets its ``unknown``/``probe_budget`` verdict at once.

The addresses of a stage batch are grouped by domain; each group joins its domain's next
engine batch (:class:`~agents.batching.KeyedBatcher`, one batch per domain at a time).
The results of a domain are produced as soon as that domain is done, so a slow domain
holds back only its own verdicts. A task of an erased job is dropped, unprobed. A domain
whose check fails for a reason other than an outage (a bug, a store refusing us) fails
alone: its events are dead-lettered with the error (and get their final verdicts from the
stage, ``unknown``/``check_failed``), unprobed again; the batch's other domains go on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Sequence

from agents.batching import KeyedBatcher
from agents.erased import without_erased
from agents.events import decode_each
from agents.outage import is_transient
from agents.ports import Done, Outcome, RawEvent, Record, Services
from agents.verdicts import attempt_record, verdict_record
from checks.budget import next_budget_day
from checks.engine import syntax_result
from checks.model import AddressProblem, ParsedAddress, Reason, VerificationResult
from schemas import AddressTask

__all__ = ["DomainHandler"]

log = logging.getLogger(__name__)

#: the addresses of one domain in a stage batch: (event index, task, parsed address)
_Group = list[tuple[int, AddressTask, ParsedAddress]]
_Finished = asyncio.Queue[tuple[_Group, "asyncio.Future[list[VerificationResult]]"]]


def _put(queue: _Finished, group: _Group,
         future: asyncio.Future[list[VerificationResult]]) -> None:
    queue.put_nowait((group, future))


class DomainHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        settings = services.settings
        # addresses of one domain arriving together share DNS, catch-all probe and sessions
        self.batcher: KeyedBatcher[ParsedAddress, VerificationResult] = KeyedBatcher(
            services.engine.verify_domain, window=settings.domain_batch_window,
            max_batch=settings.domain_batch_size, concurrency=settings.domain_concurrency,
            # one batch per domain at a time: later addresses wait for the running session
            # and then reuse its cached catch-all result instead of probing again
            serial_per_key=True)

    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(events)
        parse = self.s.engine.parse
        groups: dict[str, _Group] = {}
        records: list[Record] = []
        finished_events: list[int] = []
        tasks = await without_erased(self.s, "domain", decode_each(
            events, outcomes, AddressTask.decode), lambda it: it[1].job_id)
        for i, task in tasks:
            # intake's parse travels with the task (a list of distinct addresses would
            # otherwise run the syntax check twice: the memo is long gone by now)
            parsed = ParsedAddress.from_parts(task.email, task.domain, task.dedupe_key,
                                              task.address) or parse(task.email)
            if isinstance(parsed, AddressProblem):  # cannot happen for intake's tasks
                records.append(self._record(task, syntax_result(parsed)))
                finished_events.append(i)
            else:
                groups.setdefault(parsed.ascii_domain, []).append((i, task, parsed))
        # one completion queue instead of a task per domain: each domain's results are
        # produced as soon as they are in, together with the others that finished with it,
        # and those events are done then (a slow domain holds back only its own)
        finished: _Finished = asyncio.Queue()
        for domain, group in groups.items():
            future = self.batcher.enqueue(domain, [parsed for _, _, parsed in group])
            future.add_done_callback(functools.partial(_put, finished, group))
        left = len(groups)
        while left or records:
            while not finished.empty() or (left and not records):
                group, future = await finished.get()
                left -= 1
                error = future.exception()
                if error is not None and not is_transient(error):
                    why = f"{type(error).__name__}: {error}"
                    log.error("the check of domain %s failed (%d addresses): %s",
                              group[0][2].ascii_domain, len(group), why)
                    log.debug("the check's traceback", exc_info=error)
                    for i, _, _ in group:
                        outcomes[i] = why
                    continue
                for (i, task, _), result in zip(group, future.result(), strict=True):
                    records.append(self._record(task, result))
                    finished_events.append(i)
            await self.s.publisher.publish_many(records)
            if done is not None:
                done(finished_events)
            records, finished_events = [], []
        return outcomes

    def _record(self, task: AddressTask, result: VerificationResult) -> Record:
        over_budget = result.reason is Reason.PROBE_BUDGET
        if over_budget and task.wait_for_budget:
            # not an attempt: asked again, as this attempt, when the next day's budget starts
            # (spread over its first minute, so the day does not start with a burst)
            due = next_budget_day() + random.uniform(1.0, 60.0)
            waiting = AddressTask(**{**task.asdict(), "due_at": due,
                                     "last_reason": result.reason.value})
            return Record(self.s.topics.budget_wait, task.domain.encode(), waiting.dumps())
        delays = self.s.settings.retry_delays
        tier = task.attempt - 1
        if result.temporary and not over_budget and tier < len(delays):
            retry = AddressTask(**{**task.asdict(), "attempt": task.attempt + 1,
                                   "due_at": time.time() + delays[tier],
                                   "last_reason": result.reason.value,
                                   "history": [*(task.history or []),
                                               attempt_record(task.attempt, result)]})
            return Record(self.s.topics.retries[tier], task.domain.encode(), retry.dumps())
        return verdict_record(self.s.topics.verdicts, task, result,
                              dedupe_key=task.dedupe_key, attempt=task.attempt,
                              source=task.source)
