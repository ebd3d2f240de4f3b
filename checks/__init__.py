"""mailsift's verification engine, usable as a library without Kafka.

>>> import asyncio, checks
>>> result = asyncio.run(checks.verify("user@@example.com"))
>>> result.verdict.value, result.reason.value
('undeliverable', 'syntax')

:func:`verify` and :func:`verify_batch` use an :class:`Engine` with the default
:class:`EngineConfig` (the system's resolver, port 25); construct :class:`Engine` yourself
to pass another config (``mailsift.compose.default_engine()`` reads the ``MAILSIFT_*``
settings) or swap the resolver, cache, SMTP connector or politeness policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from checks.config import EngineConfig
from checks.engine import Engine
from checks.model import Reason, Verdict, VerificationResult

__all__ = ["Engine", "EngineConfig", "Reason", "Verdict", "VerificationResult", "verify",
           "verify_batch"]


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
    own = Engine(EngineConfig())
    try:
        return await own.verify_many(addresses)
    finally:
        await own.aclose()
