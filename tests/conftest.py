"""Shared fixtures: the local stack of real services.

The ``stack`` fixture uses the stack when ``mailsift stack up`` already runs it, and
otherwise starts it for the test session and stops exactly what it started afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailsift.settings import Settings, load_settings
from mailsift.stack import stack_down, stack_status, stack_up


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(dotenv=False)


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    already = all(s.state == "running" for s in stack_status(settings))
    if not already:
        stack_up(settings)
    try:
        yield settings
    finally:
        if not already:
            stack_down(settings)
