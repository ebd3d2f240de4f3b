"""A Faust monitor without the per-event bookkeeping.

Faust always installs its ``Monitor`` sensor. For every message it counts by topic, for
every stream event by stream and task (``str(stream)`` looked up in dicts), and for every
send it times the produce. That is about 2 % of the worker's CPU at 25,000 addresses
(issue #14, py-spy), and nothing in mailsift reads those figures: the worker's own
Prometheus metrics (``streams/metrics.py``) count what the stages did.

``LeanMonitor`` keeps what is cheap and rare (commits, rebalances, assignment, offsets
per partition, send errors) and drops the per-event hooks. Faust's ``/stats/`` page, when
the web server is on, shows zeros for the per-event counters.

>>> LeanMonitor().on_stream_event_in(None, 0, None, None) is None  # type: ignore[arg-type]
True
"""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor

__all__ = ["LeanMonitor"]


class LeanMonitor(Monitor):
    """Faust's monitor with the per-message, per-event and per-send hooks switched off."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
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
