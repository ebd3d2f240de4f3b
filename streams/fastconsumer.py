"""A Faust transport whose fetch loop hands each message over without four tasks.

Faust's fetcher (``Consumer._drain_messages``) delivers every fetched message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: the delivery is
abandoned when the flow is stopped (a rebalance) while it waits for room in a full stream
buffer. ``Service.wait_first`` makes that four tasks and an ``asyncio.wait`` per message,
about 35 µs, 40 % of what a consumed event costs the worker (measured with a Faust agent
that only acks: 88 µs per event, 53 µs with this consumer).

:class:`FastConsumer` keeps the meaning and drops the tasks: the delivery is awaited in
place, and :meth:`FastConsumer.stop_flow` cancels the fetcher while it is inside one, which
ends that delivery (as faust's own cancellation of the losing task would) and nothing
else. Every other ``wait_first`` goes to faust's.

Tested with the faust-streaming and aiokafka versions pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

__all__ = ["FastConsumer", "FastTransport", "install", "is_suspend_wait"]


def is_suspend_wait(awaitable: object, event: object) -> bool:
    """Is ``awaitable`` the not yet started coroutine ``event.wait()``?"""
    frame = getattr(awaitable, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is event


class FastConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, delivering fetched messages without a task each."""

    _delivering: asyncio.Task[Any] | None = None
    _abandoning: bool = False

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if (len(coros) != 2 or timeout is not None
                or not is_suspend_wait(coros[1], self.suspend_flow)
                or not isinstance(coros[0], Coroutine)):
            return await super().wait_first(*coros, timeout=timeout)
        delivery: Coroutine[Any, Any, Any] = coros[0]
        coros[1].close()  # never started: the flow is watched by stop_flow instead
        if self.suspend_flow.is_set():
            delivery.close()
            return WaitResults([], [], True)
        task = asyncio.current_task()
        self._delivering, self._abandoning = task, False
        try:
            result = await delivery
        except asyncio.CancelledError:
            if self._abandoning and task is not None and task.cancelling() == 1:
                task.uncancel()  # our own cancellation: the flow stopped, go on
                return WaitResults([], [], True)
            raise
        finally:
            self._delivering, self._abandoning = None, False
        return WaitResults([delivery], [result], False)

    def stop_flow(self) -> None:
        super().stop_flow()
        self._abandon_delivery()

    def _abandon_delivery(self) -> None:
        task = self._delivering
        if task is not None and not self._abandoning and task is not asyncio.current_task():
            self._abandoning = True
            task.cancel()


class FastTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`FastConsumer`."""

    Consumer = FastConsumer


def install(app: Any) -> None:
    """Use :class:`FastTransport` for ``app``'s consumer (call before the app starts)."""
    app.transport = FastTransport(app.conf.broker_consumer, app)
