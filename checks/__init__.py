"""mailsift's verification engine, usable as a library without Kafka.

>>> import asyncio, checks
>>> result = asyncio.run(checks.verify("user@@example.com"))
>>> result.verdict.value, result.reason.value
('undeliverable', 'syntax')

:func:`verify` and :func:`verify_batch` build an :class:`Engine` from the ``MAILSIFT_*``
settings; construct :class:`Engine` yourself to pass an :class:`EngineConfig` or swap the
resolver, cache, SMTP connector or politeness policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from checks.config import EngineConfig
from checks.engine import Engine
from checks.model import Reason, Verdict, VerificationResult

__all__ = ["Engine", "EngineConfig", "Reason", "Verdict", "VerificationResult", "verify",
           "verify_batch", "default_engine"]


def default_engine() -> Engine:
    """An engine configured from the ``MAILSIFT_*`` environment."""
    from mailsift.settings import load_settings

    return Engine(EngineConfig.from_settings(load_settings()))


async def verify(address: str, *, engine: Engine | None = None) -> VerificationResult:
    """Verify one address."""
    return (await verify_batch([address], engine=engine))[0]


async def verify_batch(addresses: Sequence[str], *, engine: Engine | None = None
                       ) -> list[VerificationResult]:
    """Verify many addresses (grouped by domain; results in input order).

    An engine made here is closed afterwards (its pooled SMTP sessions QUIT); a given one
    keeps its sessions for the next call.
    """
    if engine is not None:
        return await engine.verify_many(addresses)
    own = default_engine()
    try:
        return await own.verify_many(addresses)
    finally:
        await own.aclose()
