"""Intake: normalize, check syntax and policy, dedupe within the job, fan out by domain.

An input that is not an address gets its (final) syntax verdict at once, and so does a
submission that breaks the schema but names its job (``Submission.salvage``): every
submission of a job is accounted for, so the job completes. Only an event with no job goes
to the dead letters. A submission of an erased job is dropped. A repeat of an
address already in the job is announced as a ``duplicate`` job event (it shares the first
one's verdict). An address on the suppression list gets its final verdict (``unknown``,
reason ``suppressed``) at once, without any DNS or SMTP traffic. Every other address goes
to ``by-domain``, keyed by its ASCII domain.

A batch of submissions costs one Redis script per job (the claims) and one produce wait.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from agents.erased import without_erased
from agents.jobstore import job_key
from agents.outage import retry_transient
from agents.ports import Done, Outcome, RawEvent, Record, Services
from agents.verdicts import verdict_record
from checks.engine import suppressed_result, syntax_result
from checks.model import AddressProblem, ParsedAddress
from checks.suppression import candidates
from checks.syntax import input_key
from schemas import AddressTask, JobEvent, SchemaError, Submission

__all__ = ["IntakeHandler"]


@dataclass(slots=True)
class _Item:
    sub: Submission
    parsed: ParsedAddress | AddressProblem
    dedupe_key: str
    source: str


class IntakeHandler:
    def __init__(self, services: Services) -> None:
        self.s = services
        # The first submission of a repeated address is the one that wins, so claims are
        # made in offset order: a batch keeps that order, and the stage's batches take this
        # lock in the order they were dispatched (each takes it before its first await).
        self._claiming = asyncio.Lock()

    async def __call__(self, events: Sequence[RawEvent], done: Done | None = None
                       ) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(events)
        parse = self.s.engine.parse
        items: list[_Item] = []
        for i, event in enumerate(events):
            try:
                sub = Submission.decode(event.value)
                parsed = parse(sub.email)
                dedupe_key = input_key(parsed)
            except SchemaError as exc:
                salvaged = Submission.salvage(event.value)
                if salvaged is None:  # not even a job: nothing waits for it
                    outcomes[i] = str(exc)
                    continue
                # it still counts in its job: a final syntax verdict of its own
                sub, dedupe_key = salvaged, "invalid:" + event.source
                parsed = AddressProblem(sub.email, f"Not a valid submission: {exc}.")
            items.append(_Item(sub, parsed, dedupe_key, event.source))
        by_job: dict[str, list[_Item]] = {}
        for item in await without_erased(self.s, "intake", items, lambda it: it.sub.job_id):
            by_job.setdefault(job_key(item.sub.job_id, item.sub.replay_id), []).append(item)
        firsts: list[tuple[_Item, bool]] = []
        async with self._claiming:
            for jkey, items in by_job.items():
                claims = [(item.dedupe_key, item.source) for item in items]
                claimed: list[bool] = await retry_transient(
                    "intake claims", functools.partial(self.s.jobs.claim_many, jkey, claims))
                firsts += zip(items, claimed, strict=True)
        suppressed = await self._suppressed([item for item, first in firsts if first])
        records = [self._record(item, first, suppressed.get(id(item)))
                   for item, first in firsts]
        await self.s.publisher.publish_many(records)
        return outcomes

    async def _suppressed(self, items: list[_Item]) -> dict[int, str]:
        """The entry of the suppression list that matches each item on it (by ``id``):
        one round trip for the batch, before any DNS or SMTP traffic."""
        suppression = self.s.suppression
        addresses = [(item, item.parsed) for item in items
                     if isinstance(item.parsed, ParsedAddress)]
        if suppression is None or not addresses:
            return {}
        keys = [candidates(parsed) for _, parsed in addresses]
        found = await retry_transient("intake suppression list",
                                      functools.partial(suppression.matching, keys))
        return {id(item): entry for (item, _), entry in zip(addresses, found, strict=True)
                if entry is not None}

    def _record(self, item: _Item, first: bool, suppressed_by: str | None = None) -> Record:
        topics, sub = self.s.topics, item.sub
        if not first:
            event = JobEvent.create(sub.job_id, "duplicate", source=item.source,
                                    replay_id=sub.replay_id)
            return Record(topics.jobs, sub.job_id.encode(), event.dumps())
        parsed = item.parsed
        if isinstance(parsed, AddressProblem) or suppressed_by is not None:
            result = (syntax_result(parsed) if isinstance(parsed, AddressProblem)
                      else suppressed_result(parsed, suppressed_by or ""))
            return verdict_record(topics.verdicts, sub, result, dedupe_key=item.dedupe_key,
                                  attempt=1, source=item.source)
        task = AddressTask(
            job_id=sub.job_id, email=sub.email, domain=parsed.ascii_domain,
            dedupe_key=item.dedupe_key, source=item.source, attempt=1,
            request_id=sub.request_id, metadata=sub.metadata,
            submitted_at=sub.submitted_at, replay_id=sub.replay_id,
            address=parsed.parts(), wait_for_budget=sub.wait_for_budget,
        )
        return Record(topics.by_domain, parsed.ascii_domain.encode(), task.dumps())
