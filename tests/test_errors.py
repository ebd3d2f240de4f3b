"""One rule for which failures are waited out (``agents.outage``), as the stages use it."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    UnsupportedVersionError,
)

from agents.outage import retry_transient


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [KafkaTimeoutError, KafkaConnectionError,
                                   UnsupportedVersionError, ConnectionResetError])
async def test_an_outage_or_a_configuration_error_is_waited_out(
        error: type[Exception]) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise error()
        return "ok"

    assert await retry_transient("produce", flaky, first_delay=0.001) == "ok"
    assert len(calls) == 3


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [MessageSizeTooLargeError, ValueError])
async def test_the_events_own_fault_is_raised_at_once(error: type[Exception]) -> None:
    """A record too large for the broker will never fit: the stage narrows it down to the
    event and dead-letters it instead of retrying forever."""
    calls: list[int] = []

    async def bad() -> None:
        calls.append(1)
        raise error()

    with pytest.raises(error):
        await retry_transient("produce", bad, first_delay=0.001)
    assert calls == [1]
