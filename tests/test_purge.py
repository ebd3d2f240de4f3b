"""The retention purge loop without Postgres: a failing purge never stops the worker."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import pytest

from mailsift.settings import load_settings
from streams.purge import purge_forever


class FailingSink:
    def __init__(self) -> None:
        self.calls = 0

    async def purge_expired(self, cutoff: datetime) -> Any:
        self.calls += 1
        raise RuntimeError("deadlock detected")  # not an outage: still no crash


@pytest.mark.asyncio
async def test_a_failing_purge_is_one_warning_and_is_tried_again(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"MAILSIFT_PURGE_INTERVAL": "0.05"}, dotenv=False)
    sink = FailingSink()
    with caplog.at_level(logging.WARNING, logger="streams.purge"):
        task = asyncio.ensure_future(purge_forever(settings, sink))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
    assert sink.calls >= 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("retention purge: it failed (RuntimeError: deadlock detected)" in m
                         for m in lines), lines
