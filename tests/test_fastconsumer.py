"""The fetch loop's delivery without tasks: same outcome as faust's wait_first."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from mode.services import WaitResults

from streams.fastconsumer import FastConsumer, is_suspend_wait

pytestmark = pytest.mark.asyncio


class Stub:
    """Just what FastConsumer's fast path touches (faust's consumer needs a broker)."""

    def __init__(self) -> None:
        self.suspend_flow = asyncio.Event()
        self._delivering: asyncio.Task[Any] | None = None
        self._abandoning = False

    async def wait_first(self, *coros: Any) -> WaitResults:
        return await FastConsumer.wait_first(cast(FastConsumer, self), *coros)

    def stop_flow(self) -> None:
        self.suspend_flow.set()
        FastConsumer._abandon_delivery(cast(FastConsumer, self))


async def test_a_delivery_runs_in_place_and_returns_its_result() -> None:
    stub = Stub()

    async def deliver() -> str:
        return "delivered"

    result = await stub.wait_first(deliver(), stub.suspend_flow.wait())
    assert (result.results, result.stopped) == (["delivered"], False)
    waiting = stub.suspend_flow.wait()
    assert is_suspend_wait(waiting, stub.suspend_flow)
    assert not is_suspend_wait(waiting, asyncio.Event())
    waiting.close()


async def test_stopping_the_flow_abandons_a_blocked_delivery_and_nothing_else() -> None:
    stub = Stub()
    full: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    full.put_nowait(0)
    after: list[str] = []

    async def fetcher() -> bool:
        result = await stub.wait_first(full.put(1), stub.suspend_flow.wait())
        await asyncio.sleep(0)  # the fetcher itself was not cancelled: it goes on
        after.append("went on")
        return result.stopped

    task = asyncio.create_task(fetcher())
    await asyncio.sleep(0.01)  # blocked on the full buffer
    stub.stop_flow()
    assert await asyncio.wait_for(task, 1) is True
    assert after == ["went on"] and full.qsize() == 1 and not task.cancelling()


async def test_a_delivery_started_after_the_stop_is_not_made() -> None:
    stub = Stub()
    stub.suspend_flow.set()
    made: list[int] = []

    async def deliver() -> None:
        made.append(1)

    result = await stub.wait_first(deliver(), stub.suspend_flow.wait())
    assert result.stopped and made == []


async def test_a_real_cancellation_still_cancels_the_fetcher() -> None:
    stub = Stub()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def deliver() -> None:
        await never

    task = asyncio.create_task(stub.wait_first(deliver(), stub.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
