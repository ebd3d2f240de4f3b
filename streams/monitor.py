"""A Faust monitor without the per-event bookkeeping.

Faust always installs its ``Monitor`` sensor. For every message it counts by topic, for
every stream event by stream and task (``str(stream)`` looked up in dicts), and for every
send it times the produce. That is about 2 % of the worker's CPU at 25,000 addresses
(issue #14, py-spy), and nothing in mailsift reads those figures: the worker's own
Prometheus metrics (``streams/metrics.py``) count what the stages did.

``LeanMonitor`` keeps what is cheap and rare (commits, rebalances, assignment, offsets
per partition, send errors) and drops the per-event hooks, except for one time stamp per
partition: faust's consumer reads ``stream_inbound_time`` to tell a stream that stopped
from one that is behind (without it, a partition more than ``stream_processing_timeout``
behind logs "Stream has not started processing" every few seconds while it is being
worked on). Faust's ``/stats/`` page, when the web server is on, shows zeros for the
per-event counters.

>>> monitor = LeanMonitor()
>>> monitor.on_stream_event_in("tp0", 7, None, None) is None  # type: ignore[arg-type]
True
>>> list(monitor.stream_inbound_time)
['tp0']
"""

from __future__ import annotations

import time
from typing import Any

from faust.sensors.monitor import Monitor

__all__ = ["LeanMonitor"]


class LeanMonitor(Monitor):
    """Faust's monitor with the per-message, per-event and per-send hooks switched off."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = time.monotonic()
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None
