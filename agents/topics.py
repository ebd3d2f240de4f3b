"""Topic names.

All names share ``MAILSIFT_TOPIC_PREFIX`` (default ``mailsift.``). Retry delays get one topic
per tier (``retries.0``, ``retries.1``…): every event of a tier waits the same delay, so
each tier's topic is in due-time order and its agent just sleeps until the head is due.
``retries.budget`` holds the addresses waiting for the next day's probe budget (all due
when a UTC day starts, so it is in due-time order too).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsift.settings import Settings

__all__ = ["TopicNames"]


@dataclass(frozen=True)
class TopicNames:
    submissions: str
    replays: str
    by_domain: str
    retries: tuple[str, ...]
    budget_wait: str
    verdicts: str
    jobs: str
    dead_letters: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        p = settings.topic_prefix
        return cls(
            submissions=f"{p}submissions",
            replays=f"{p}replays",
            by_domain=f"{p}by-domain",
            retries=tuple(f"{p}retries.{i}" for i in range(len(settings.retry_delays))),
            budget_wait=f"{p}retries.budget",
            verdicts=f"{p}verdicts",
            jobs=f"{p}jobs",
            dead_letters=f"{p}dead-letters",
        )

    def all(self) -> list[str]:
        return [self.submissions, self.replays, self.by_domain, *self.retries,
                self.budget_wait, self.verdicts, self.jobs, self.dead_letters]
